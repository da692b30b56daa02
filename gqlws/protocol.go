package gqlws

import (
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The two subprotocols share one envelope, {"type", "id", "payload"}, and
// most of their meaning: each has an adapter (transportws.go, legacy.go)
// that maps its message types onto the kinds below, writes the server's
// answers in its own wire form and refuses what it does not accept as its
// specification says. The connection (conn.go) handles the kinds once and
// asks its adapter only where the protocols differ. The frames both send
// alike (an operation's error and complete, its results' shape) are built
// here, without reflection.

// protocol is a subprotocol's adapter. Its implementations are stateless:
// one value serves every connection of that subprotocol.
type protocol interface {
	// kind returns the kind of a client message of type typ: kindUnknown
	// for a type the protocol does not have or that only the server sends.
	kind(typ string) messageKind

	// acknowledge sends the connection_ack, with payload unless it is nil,
	// and whatever the protocol sends along with it.
	acknowledge(c *conn, payload map[string]any)
	// subscribeRefusal returns why a subscribe (start) that has an id is
	// refused, given whether the connection is acknowledged and whether the
	// payload holds a query; refused is false when it is not. Where both
	// are wrong, the protocol decides which one the client hears of.
	subscribeRefusal(acked, hasQuery bool) (reason refusalReason, refused bool)
	// replacesRunningID reports whether a subscribe (start) for the id of a
	// running operation replaces that operation, rather than being refused
	// with duplicateID.
	replacesRunningID() bool
	// answerStop answers the client's complete (stop) of an operation that
	// was running: by nothing, or by a message saying it is over.
	answerStop(c *conn, id string)
	// refuse answers a client message the server does not accept: by a
	// message saying why, by closing the connection, or by both.
	refuse(c *conn, r refusal)

	// resultHead is how an operation's result frame begins, up to the
	// operation's id: `{"type":"next","id":` or `{"type":"data","id":`.
	// The slice is shared: callers must not modify it.
	resultHead() []byte
	// keepaliveFrame is the message the keepalive sends every interval.
	// The slice is shared: callers must not modify it.
	keepaliveFrame() []byte
	// dropsSilentClients reports whether a client that sends nothing for
	// silentIntervals keepalive intervals is disconnected: only where the
	// client must answer keepalives.
	dropsSilentClients() bool
}

// protocolNamed returns the adapter of subprotocol name, which
// chooseSubprotocol picked: TransportWS or LegacyWS.
func protocolNamed(name string) protocol {
	if name == TransportWS {
		return transportWS{}
	}
	return legacyWS{}
}

// messageKind is what a client message asks for, whatever its protocol
// calls it.
type messageKind int

const (
	kindUnknown   messageKind = iota // a type the protocol does not have, or only the server sends
	kindInit                         // connection_init: authenticate and acknowledge
	kindPing                         // ping (graphql-transport-ws): answer pong
	kindPong                         // pong (graphql-transport-ws): nothing to do
	kindSubscribe                    // subscribe, start: run an operation
	kindComplete                     // complete, stop: stop an operation
	kindTerminate                    // connection_terminate (legacy): close normally
)

// refusalReason is why the server does not accept a client message.
type refusalReason int

const (
	malformedMessage      refusalReason = iota // not a text message holding a JSON object with a type
	unknownType                                // a kind the protocol does not have
	repeatedInit                               // a second connection_init
	initRefused                                // connection_init refused: by Options.Init, or its payload is not an object
	subscribeWithoutID                         // subscribe (start) without a non-empty string id
	subscribeBeforeAck                         // subscribe (start) before connection_ack
	subscribeWithoutQuery                      // subscribe (start) whose payload holds no query
	duplicateID                                // subscribe for the id of a running operation
	completeWithoutID                          // complete (stop) without a non-empty string id
)

// refusal is a refused client message: why, and what the answer may need
// to say.
type refusal struct {
	reason refusalReason
	id     string // the message's operation id, when it has one
	err    error  // why init refused the connection (initRefused only)
}

// errBadPayload refuses a connection_init whose payload is not an object.
var errBadPayload = errors.New("connection_init payload must be an object")

// reasonInvalid is the close reason of 4400, as the reference server words
// it; the legacy protocol says it in a connection_error.
const reasonInvalid = "Invalid message received"

// closeRefusedInit closes a connection whose connection_init was refused
// with err: 4400 for a payload that is not an object, 1013 for a
// *TryAgainLater, 4403 for any other grant Options.Init refused.
func closeRefusedInit(c *conn, err error) {
	var later *TryAgainLater
	switch {
	case errors.Is(err, errBadPayload):
		c.close(CloseInvalidMessage, reasonInvalid)
	case errors.As(err, &later):
		reason := later.Reason
		if len(reason) > maxCloseReason || !utf8.ValidString(reason) {
			reason = "Try again later"
		}
		c.close(CloseTryAgainLater, reason)
	default:
		c.close(CloseForbidden, "Forbidden")
	}
}

// clientMessage is a client message of either protocol, as sent.
type clientMessage struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// decodeMessage decodes a client message of WebSocket message type typ. It
// reports false unless the message is text holding a JSON object with a
// non-empty type, whose id, when it is a string, has at most MaxIDLength
// bytes.
func decodeMessage(typ int, data []byte) (clientMessage, bool) {
	var m clientMessage
	if typ != websocket.TextMessage || json.Unmarshal(data, &m) != nil || m.Type == "" {
		return clientMessage{}, false
	}
	if id, ok := m.operationID(); ok && len(id) > MaxIDLength {
		return clientMessage{}, false
	}
	return m, true
}

// operationID returns the message's id when it is a non-empty JSON string.
func (m *clientMessage) operationID() (string, bool) {
	if len(m.ID) == 0 {
		return "", false
	}
	var id string
	if err := json.Unmarshal(m.ID, &id); err != nil || id == "" {
		return "", false
	}
	return id, true
}

// The frames both protocols send alike, built without reflection.

var (
	payloadInfix = []byte(`,"payload":`)
	frameSuffix  = []byte(`}`)
)

// completeFrame is the complete message of operation id, which ends its
// results (the same on both protocols).
func completeFrame(id string) []byte {
	b := appendJSONString([]byte(`{"type":"complete","id":`), id)
	return append(b, '}')
}

// operationFrame is the message {"type": typ, "id": id, "payload":
// payload}; payload must be JSON.
func operationFrame(typ, id string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(id)+32)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = appendJSONString(b, id)
	b = append(b, payloadInfix...)
	b = append(b, payload...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}
