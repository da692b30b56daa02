package gqlws_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboardhq/switchboard/gqlws"
)

// FuzzWireMessages drives a connection of either subprotocol with a script
// of arbitrary client messages and checks every frame the server sends
// back, whatever the client sent: valid by RFC 6455 (control frames of at
// most 125 bytes, close reasons and text frames of valid UTF-8, nothing
// after the close frame), and on the subprotocol's terms (only the
// messages its specification documents, with ids the client sent, at most
// gqlws.MaxIDLength bytes; only the close codes and reasons
// docs/protocol.md lists; nothing more for an operation the client
// stopped). The server must also answer: after each message a marker (a
// ping, or an unknown type on the legacy protocol) must be answered, or
// the connection closed, within the read timeout.
//
// The seed corpus (testdata/fuzz/FuzzWireMessages) covers every message
// type of both protocols, ids of many lengths, bad JSON, binary frames,
// text that is not UTF-8 and client pings; go test runs it every time, and
// .ci/run fuzzes for a bounded time after the tests.
//
// A script is the client's messages, one per line: a line starting with
// byte 0x00 is sent as a binary message, one starting with 0x01 as a
// WebSocket ping (its first 125 bytes), any other as a text message.
func FuzzWireMessages(f *testing.F) {
	h := newHarness(f, wireOptions())
	f.Fuzz(func(t *testing.T, legacy bool, script string) {
		proto := gqlws.TransportWS
		if legacy {
			proto = gqlws.LegacyWS
		}
		s := &wireSession{t: t, c: dialRaw(t, h.srv.URL, proto), check: newWireChecker(legacy)}
		for i, m := range scriptMessages(script) {
			if s.send(m) {
				return
			}
			if s.send(s.check.marker(i)) {
				return
			}
			if s.readUntil(func(f []byte) bool { return s.check.isMarkerAnswer(f, i) }) {
				return
			}
		}
		// The client closes; every frame up to the server's close is checked.
		if err := s.c.write(opClose, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
			t.Fatalf("the server closed the TCP connection without a close frame: %v", err)
		}
		if !s.readUntil(func([]byte) bool { return false }) {
			t.Fatal("the connection did not close")
		}
	})
}

// maxScriptMessages bounds the messages of one script, so one fuzz input
// stays quick.
const maxScriptMessages = 16

// scriptMessage is one message of a script: a WebSocket opcode and payload.
type scriptMessage struct {
	opcode  byte
	payload []byte
}

// scriptMessages splits script into its messages (see FuzzWireMessages).
func scriptMessages(script string) []scriptMessage {
	var out []scriptMessage
	for line := range strings.SplitSeq(script, "\n") {
		if len(out) == maxScriptMessages {
			break
		}
		m := scriptMessage{opcode: opText, payload: []byte(line)}
		if len(line) > 0 && line[0] <= 0x01 {
			m = scriptMessage{opcode: [...]byte{opBinary, opPing}[line[0]], payload: []byte(line[1:])}
			if m.opcode == opPing && len(m.payload) > 125 {
				m.payload = m.payload[:125]
			}
		}
		out = append(out, m)
	}
	return out
}

// wireSession is one fuzzed connection: the client and what it checks.
type wireSession struct {
	t      *testing.T
	c      *rawClient
	check  *wireChecker
	closed bool // the server's close frame came
}

// send sends m, noting what it means for the checker. It reports true when
// the session is over: the server closed the connection before it could be
// sent (its close frame was read already).
func (s *wireSession) send(m scriptMessage) bool {
	s.check.sent(m)
	if err := s.c.write(m.opcode, m.payload); err != nil {
		if !s.closed && !isClosedErr(err) {
			s.t.Fatalf("write: %v", err)
		}
		return s.readUntil(func([]byte) bool { return false })
	}
	return false
}

// readUntil reads and checks the server's frames until a text frame that
// done accepts (false) or the server's close frame, after which nothing
// may follow (true). Every frame must come within 10 s.
func (s *wireSession) readUntil(done func(frame []byte) bool) bool {
	t := s.t
	for !s.closed {
		f, err := s.c.read(time.Now().Add(10 * time.Second))
		if err != nil {
			t.Fatalf("no answer and no close frame: %v (%s)", err, s.check.history())
		}
		if p := rfc6455Problem(f); p != "" {
			t.Fatalf("%s: %q (%s)", p, truncate(f.payload), s.check.history())
		}
		switch f.opcode {
		case opText:
			if err := s.check.received(f.payload); err != nil {
				t.Fatalf("%v: %s (%s)", err, truncate(f.payload), s.check.history())
			}
			if done(f.payload) {
				return false
			}
		case opClose:
			code, reason := closeCode(f)
			if err := s.check.closed(code, reason); err != nil {
				t.Fatalf("%v (%s)", err, s.check.history())
			}
			s.closed = true
		}
	}
	if f, err := s.c.read(time.Now().Add(10 * time.Second)); !isClosedErr(err) {
		t.Fatalf("after the close frame: %v %q (%s)", err, f.payload, s.check.history())
	}
	return true
}

// wireChecker knows what the client has sent on a connection and checks
// the server's messages against the subprotocol.
type wireChecker struct {
	legacy   bool
	initSent bool            // a connection_init was sent
	acked    bool            // the connection_ack came
	ids      map[string]bool // every id the client sent
	// stopped holds the ids the client has stopped (complete, stop) and not
	// started again since: an id is stopping until the marker after its
	// stop is answered, then stopped.
	stopping map[string]bool
	stopped  map[string]bool
	log      []string // what was sent and received, for failures
}

// newWireChecker returns the checker of a fresh connection.
func newWireChecker(legacy bool) *wireChecker {
	return &wireChecker{legacy: legacy, ids: map[string]bool{}, stopping: map[string]bool{}, stopped: map[string]bool{}}
}

// clientMessage is a client's message as the server decodes it (Go's
// encoding/json, whose field names match case-insensitively).
type clientMessage struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
}

// sent notes the client's message m.
func (w *wireChecker) sent(m scriptMessage) {
	w.log = append(w.log, fmt.Sprintf("> %#x %q", m.opcode, truncate(m.payload)))
	var cm clientMessage
	if m.opcode != opText || json.Unmarshal(m.payload, &cm) != nil {
		return
	}
	var id string
	if json.Unmarshal(cm.ID, &id) == nil && id != "" {
		w.ids[id] = true
	}
	switch cm.Type {
	case "connection_init":
		w.initSent = true
	case "subscribe", "start":
		delete(w.stopping, id)
		delete(w.stopped, id)
	case "complete", "stop":
		w.stopping[id] = true
	}
}

// marker is the message sent after the client's message i: a ping whose
// answer is the next frame after the answers to message i, or on the
// legacy protocol a message of unknown type, answered with error.
func (w *wireChecker) marker(i int) scriptMessage {
	if w.legacy {
		return scriptMessage{opcode: opText, payload: fmt.Appendf(nil, `{"type":"marker","id":"marker-%d"}`, i)}
	}
	return scriptMessage{opcode: opText, payload: fmt.Appendf(nil, `{"type":"ping","payload":{"marker":%d}}`, i)}
}

// isMarkerAnswer reports whether frame answers marker i. Once it does, the
// ids stopped before it are stopped for good.
func (w *wireChecker) isMarkerAnswer(frame []byte, i int) bool {
	var m struct {
		Type    string
		ID      string
		Payload struct{ Marker *int }
	}
	if json.Unmarshal(frame, &m) != nil {
		return false
	}
	answered := m.Type == "pong" && m.Payload.Marker != nil && *m.Payload.Marker == i
	if w.legacy {
		answered = m.Type == "error" && m.ID == "marker-"+strconv.Itoa(i)
	}
	if answered {
		for id := range w.stopping {
			w.stopped[id] = true
		}
		clear(w.stopping)
	}
	return answered
}

// serverMessage is a server's message, every field kept to be checked.
type serverMessage map[string]json.RawMessage

// received checks the server's text message frame.
func (w *wireChecker) received(frame []byte) error {
	w.log = append(w.log, "< "+truncate(frame))
	var m serverMessage
	if err := json.Unmarshal(frame, &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	for k := range m {
		if k != "type" && k != "id" && k != "payload" {
			return fmt.Errorf("field %q", k)
		}
	}
	var typ string
	if err := json.Unmarshal(m["type"], &typ); err != nil {
		return fmt.Errorf("no type: %w", err)
	}
	if w.legacy {
		return w.legacyMessage(typ, m)
	}
	return w.transportWSMessage(typ, m)
}

// transportWSMessage checks a graphql-transport-ws message, as the graphql-ws
// client validates it, and its place in the exchange.
func (w *wireChecker) transportWSMessage(typ string, m serverMessage) error {
	switch typ {
	case "connection_ack":
		if err := w.ack(m); err != nil {
			return err
		}
		return noID(m)
	case "ping", "pong":
		if !isObjectOrNull(m["payload"]) {
			return fmt.Errorf("%s payload is not an object", typ)
		}
		return noID(m)
	case "next":
		if !isObject(m["payload"]) {
			return fmt.Errorf("next payload is not an object")
		}
		return w.operationID(m, true, true)
	case "error":
		if err := graphQLErrors(m["payload"]); err != nil {
			return err
		}
		return w.operationID(m, false, true)
	case "complete":
		if m["payload"] != nil {
			return fmt.Errorf("complete with a payload")
		}
		return w.operationID(m, false, true)
	}
	return fmt.Errorf("undocumented message type %q", typ)
}

// legacyMessage checks a subscriptions-transport-ws message and its place
// in the exchange.
func (w *wireChecker) legacyMessage(typ string, m serverMessage) error {
	switch typ {
	case "connection_ack":
		return w.ack(m)
	case "ka":
		if !w.acked {
			return fmt.Errorf("ka before connection_ack")
		}
		return noID(m)
	case "connection_error":
		if err := errorObject(m["payload"]); err != nil {
			return err
		}
		return noID(m)
	case "data":
		if !isObject(m["payload"]) {
			return fmt.Errorf("data payload is not an object")
		}
		return w.operationID(m, true, true)
	case "error":
		// The legacy protocol refuses a start before connection_init, and
		// a message of unknown type at any time, with error.
		if err := errorObject(m["payload"]); err != nil && graphQLErrors(m["payload"]) != nil {
			return fmt.Errorf("error payload is neither an error nor a list of GraphQL errors: %w", err)
		}
		if m["id"] == nil {
			return nil // the answer to an unknown type without id
		}
		return w.operationID(m, false, false)
	case "complete":
		return w.operationID(m, false, true)
	}
	return fmt.Errorf("undocumented message type %q", typ)
}

// ack checks a connection_ack: one, after connection_init, with an object
// payload or none.
func (w *wireChecker) ack(m serverMessage) error {
	switch {
	case !w.initSent:
		return fmt.Errorf("connection_ack without connection_init")
	case w.acked:
		return fmt.Errorf("a second connection_ack")
	case !isObjectOrNull(m["payload"]):
		return fmt.Errorf("connection_ack payload is not an object")
	}
	w.acked = true
	return nil
}

// operationID checks the id of an operation's message: a non-empty string
// of at most gqlws.MaxIDLength bytes that the client sent, after the
// connection_ack when afterAck. A result (next, data) must not come for an
// operation the client stopped once the marker after its stop was
// answered.
func (w *wireChecker) operationID(m serverMessage, result, afterAck bool) error {
	var id string
	if err := json.Unmarshal(m["id"], &id); err != nil {
		return fmt.Errorf("id is not a string: %w", err)
	}
	switch {
	case id == "":
		return fmt.Errorf("empty id")
	case len(id) > gqlws.MaxIDLength:
		return fmt.Errorf("an id of %d bytes", len(id))
	case !w.ids[id]:
		return fmt.Errorf("id %q was never sent", id)
	case result && w.stopped[id]:
		return fmt.Errorf("a result for %q after the client stopped it", id)
	case afterAck && !w.acked:
		return fmt.Errorf("an operation's message before connection_ack")
	}
	return nil
}

// documentedCloses are the close codes of docs/protocol.md, by subprotocol,
// with their reasons ("" for none): the client's own code 1000 (the server
// echoes it) among them.
var documentedCloses = map[bool]map[int][]string{
	false: {
		1000: {""}, 1001: {"server shutting down", "Keepalive timeout"}, 1007: {"Invalid UTF-8"},
		1009: {"Message too big"}, 1013: {"Slow consumer"}, 4400: {"Invalid message received"},
		4401: {"Unauthorized"}, 4403: {"Forbidden", "Token expired"}, 4408: {"Connection initialisation timeout"},
		4409: nil, // "Subscriber for <id> already exists": see closed
		4429: {"Too many initialisation requests"}, 4500: {"Internal server error"},
	},
	true: {
		1000: {""}, 1001: {"server shutting down"}, 1007: {"Invalid UTF-8"}, 1009: {"Message too big"},
		1013: {"Slow consumer"}, 4400: {"Invalid message received"}, 4403: {"Forbidden", "Token expired"},
		4408: {"Connection initialisation timeout"}, 4500: {"Internal server error"},
	},
}

// closed checks the server's close code and reason.
func (w *wireChecker) closed(code int, reason string) error {
	w.log = append(w.log, fmt.Sprintf("< close %d %q", code, reason))
	reasons, ok := documentedCloses[w.legacy][code]
	switch {
	case !ok:
		return fmt.Errorf("undocumented close code %d (%q)", code, reason)
	case len(reason) > 123:
		return fmt.Errorf("a close reason of %d bytes", len(reason))
	case code == gqlws.CloseSubscriberExists:
		rest, prefixed := strings.CutPrefix(reason, "Subscriber for ")
		id, suffixed := strings.CutSuffix(rest, " already exists")
		if !prefixed || !suffixed || id == "" {
			return fmt.Errorf("4409 with reason %q", reason)
		}
		if !w.ids[id] && !w.sentIDPrefix(strings.TrimSuffix(id, "…")) {
			return fmt.Errorf("4409 names id %q, which was never sent", id)
		}
		return nil
	}
	for _, r := range reasons {
		if r == reason {
			return nil
		}
	}
	return fmt.Errorf("close code %d with reason %q", code, reason)
}

// sentIDPrefix reports whether a longer id the client sent begins with
// prefix (a 4409 reason shortens a long id).
func (w *wireChecker) sentIDPrefix(prefix string) bool {
	for id := range w.ids {
		if len(id) > len(prefix) && strings.HasPrefix(id, prefix) {
			return true
		}
	}
	return false
}

// history is what was sent and received, for a failure's message.
func (w *wireChecker) history() string { return strings.Join(w.log, "\n") }

// noID checks that a connection-level message has no id.
func noID(m serverMessage) error {
	if m["id"] != nil {
		return fmt.Errorf("an id on a connection-level message")
	}
	return nil
}

// graphQLErrors checks an error payload of graphql-transport-ws: a non-empty
// list of errors, each an object with a string message.
func graphQLErrors(raw json.RawMessage) error {
	var errs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &errs); err != nil || len(errs) == 0 {
		return fmt.Errorf("error payload is not a non-empty list of errors: %s", raw)
	}
	for _, e := range errs {
		var msg string
		if json.Unmarshal(e["message"], &msg) != nil {
			return fmt.Errorf("an error without a message: %s", raw)
		}
	}
	return nil
}

// errorObject checks a legacy error payload: an object with a string
// message.
func errorObject(raw json.RawMessage) error {
	var e struct{ Message *string }
	if json.Unmarshal(raw, &e) != nil || !isObject(raw) || e.Message == nil {
		return fmt.Errorf("payload is not an object with a message: %s", raw)
	}
	return nil
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// isObjectOrNull reports whether raw is absent, null or an object.
func isObjectOrNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || isObject(raw)
}

// truncate shortens what a failure message quotes.
func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
