package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// protocol is a WebSocket subprotocol loadgen speaks.
type protocol int

const (
	transportWS protocol = iota // graphql-transport-ws (the graphql-ws library)
	legacyWS                    // graphql-ws (Apollo's subscriptions-transport-ws)
	sseProto                    // no WebSocket: an event stream (GraphQL over SSE)
)

func (p protocol) subprotocol() string {
	if p == legacyWS {
		return "graphql-ws"
	}
	return "graphql-transport-ws"
}

func (p protocol) String() string {
	switch p {
	case legacyWS:
		return "legacy"
	case sseProto:
		return "sse"
	}
	return "transport"
}

// subscriptionQuery is what every subscriber subscribes to: the same
// selection for all, so a server may encode each event once.
const subscriptionQuery = `subscription($a: ID){ statusPosted(after: $a){ id text } }`

// tally collects what all subscribers receive, per step of the plan. Step k
// holds the posts numbered stepStart[k] to stepStart[k+1]-1.
type tally struct {
	runID      string
	textPrefix []byte // `,"text":"lg:<runID>:` right after the status id
	plain      string // "lg:<runID>:"
	stepStart  []int
	steps      []*stepTally

	closing     atomic.Bool // loadgen is closing the connections itself
	disconnects atomic.Int64
	subErrors   atomic.Int64
	errs        *errorLog
}

// stepTally is what subscribers received of one step's posts.
type stepTally struct {
	latency    *histogram // publish→receive, first delivery of each post per connection
	received   atomic.Int64
	duplicates atomic.Int64
	lastRecv   atomic.Int64 // unix nanos of the latest first delivery
}

func newTally(runID string, plan []stepPlan, errs *errorLog) *tally {
	t := &tally{
		runID:      runID,
		textPrefix: []byte(`,"text":"lg:` + runID + ":"),
		plain:      "lg:" + runID + ":",
		stepStart:  []int{0},
		errs:       errs,
	}
	for _, s := range plan {
		t.stepStart = append(t.stepStart, t.stepStart[len(t.stepStart)-1]+s.posts)
		t.steps = append(t.steps, &stepTally{latency: newHistogram()})
	}
	return t
}

// receivedAll is how many first deliveries the subscribers have had, over
// every step.
func (t *tally) receivedAll() int64 {
	var n int64
	for _, st := range t.steps {
		n += st.received.Load()
	}
	return n
}

// total is the number of posts planned.
func (t *tally) total() int { return t.stepStart[len(t.stepStart)-1] }

func (t *tally) stepOf(seq int) int {
	k := 0
	for seq >= t.stepStart[k+1] {
		k++
	}
	return k
}

var statusPrefix = []byte(`"statusPosted":{"id":"`)

// parseFast extracts the status id, the post number and the send time from
// a next/data message without decoding its JSON, when the message has the
// compact shape servers produce ({"id":"N","text":"lg:…"} in selection
// order). ok=false sends the message to the decoding path.
func (t *tally) parseFast(msg []byte) (id int64, seq int, sent int64, ok bool) {
	i := bytes.Index(msg, statusPrefix)
	if i < 0 {
		return 0, 0, 0, false
	}
	b := msg[i+len(statusPrefix):]
	if id, b, ok = cutInt(b, '"'); !ok || !bytes.HasPrefix(b, t.textPrefix) {
		return 0, 0, 0, false
	}
	n, b, ok := cutInt(b[len(t.textPrefix):], ':')
	if !ok {
		return 0, 0, 0, false
	}
	if sent, _, ok = cutInt(b, '"'); !ok {
		sent, _, ok = cutInt(b, ' ') // a padded text
	}
	if !ok {
		return 0, 0, 0, false
	}
	return id, int(n), sent, true
}

// parseText extracts the post number and send time from a status text
// "lg:<runID>:<seq>:<unix nanos>"; ok=false for anyone else's status.
func (t *tally) parseText(text string) (seq int, sent int64, ok bool) {
	rest, found := strings.CutPrefix(text, t.plain)
	if !found {
		return 0, 0, false
	}
	s, n, found := strings.Cut(rest, ":")
	if !found {
		return 0, 0, false
	}
	n, _, _ = strings.Cut(n, " ") // padding follows a space
	q, err1 := strconv.Atoi(s)
	sent, err2 := strconv.ParseInt(n, 10, 64)
	return q, sent, err1 == nil && err2 == nil && q >= 0
}

// cutInt parses the non-negative decimal number at the start of b, which
// must be followed by end, and returns what follows end.
func cutInt(b []byte, end byte) (int64, []byte, bool) {
	i := bytes.IndexByte(b, end)
	if i < 0 {
		return 0, nil, false
	}
	n, ok := digits(b[:i])
	if !ok {
		return 0, nil, false
	}
	return n, b[i+1:], true
}

// digits parses b, decimal digits only, as a non-negative number.
func digits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (math.MaxInt64-9)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// envelope is any graphql-transport-ws or legacy message.
type envelope struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

var pongMessage = []byte(`{"type":"pong"}`)

// connector opens subscribed connections.
type connector struct {
	wsURL   string
	dialers []*websocket.Dialer // one per source address, used in turn
	proto   string              // transport, legacy, mixed or sse
	sseURL  string              // -proto sse: the subscription's GET
	sse     []*http.Client      // -proto sse: one per source address, used in turn
	token   string              // -proto sse: sent as Authorization
	timeout time.Duration       // for dial + init + subscribe
	init    []byte              // the connection_init message
	sub     [2][]byte           // the subscribe/start message, by protocol
	tally   *tally
}

func newConnector(wsURL string, dialers []*websocket.Dialer, proto, token string, payload map[string]any, timeout time.Duration, t *tally) *connector {
	c := &connector{wsURL: wsURL, dialers: dialers, proto: proto, timeout: timeout, tally: t, token: token}
	initPayload := map[string]any{}
	if token != "" {
		initPayload["authorization"] = "Bearer " + token
	}
	c.init = mustJSON(map[string]any{"type": "connection_init", "payload": initPayload})
	c.sub[transportWS] = mustJSON(map[string]any{"type": "subscribe", "id": "1", "payload": payload})
	c.sub[legacyWS] = mustJSON(map[string]any{"type": "start", "id": "1", "payload": payload})
	return c
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// protoFor is the protocol of connection i: mixed alternates.
func (c *connector) protoFor(i int) protocol {
	switch c.proto {
	case "legacy":
		return legacyWS
	case "mixed":
		if i%2 == 1 {
			return legacyWS
		}
	}
	return transportWS
}

// connect dials connection i, initialises it, waits for connection_ack and
// sends the subscription. The caller starts the subscriber's readLoop.
func (c *connector) connect(ctx context.Context, i int) (*subscriber, error) {
	if c.proto == "sse" {
		return c.connectSSE(ctx, i)
	}
	proto := c.protoFor(i)
	d := *c.dialers[i%len(c.dialers)]
	d.Subprotocols = []string{proto.subprotocol()}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ws, _, err := d.DialContext(ctx, c.wsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	fail := func(err error) (*subscriber, error) {
		_ = ws.Close()
		return nil, err
	}
	if got := ws.Subprotocol(); got != proto.subprotocol() {
		return fail(fmt.Errorf("asked for subprotocol %s, server chose %q", proto.subprotocol(), got))
	}
	ws.SetReadLimit(1 << 20)
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	_ = ws.SetWriteDeadline(deadline)
	if err := ws.WriteMessage(websocket.TextMessage, c.init); err != nil {
		return fail(fmt.Errorf("write connection_init: %w", err))
	}
	for acked := false; !acked; {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("wait for connection_ack: %w", err))
		}
		var env envelope
		if err := json.Unmarshal(msg, &env); err != nil {
			return fail(fmt.Errorf("wait for connection_ack: not JSON: %.100q", msg))
		}
		switch env.Type {
		case "connection_ack":
			acked = true
		case "ping":
			if err := ws.WriteMessage(websocket.TextMessage, pongMessage); err != nil {
				return fail(fmt.Errorf("write pong: %w", err))
			}
		case "ka", "pong":
		default:
			return fail(fmt.Errorf("wait for connection_ack: got %.200s", msg))
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, c.sub[proto]); err != nil {
		return fail(fmt.Errorf("write subscribe: %w", err))
	}
	_ = ws.SetReadDeadline(time.Time{})
	_ = ws.SetWriteDeadline(time.Time{})
	return &subscriber{ws: ws, proto: proto, got: newBitset(c.tally.total())}, nil
}

// subscriber is one subscribed connection. Its fields are owned by its
// readLoop until that returns.
type subscriber struct {
	ws    *websocket.Conn
	body  io.ReadCloser // -proto sse: the event stream, instead of ws
	proto protocol
	got   bitset // post numbers received
	buf   []byte

	lastID     int64
	duplicates int64 // a post received again
	outOfOrder int64 // a status id not above the previous one (duplicates aside)
	foreign    int64 // statuses loadgen did not post in this run
	unexpected int64 // loadgen's, but beyond the plan
	ended      bool  // the server sent error or complete
}

// readLoop reads until the connection fails or is closed.
func (s *subscriber) readLoop(t *tally) {
	if s.proto == sseProto {
		s.readSSE(t)
		return
	}
	for {
		_, r, err := s.ws.NextReader()
		if err == nil {
			s.buf, err = readAll(s.buf[:0], r)
		}
		if err != nil {
			if !t.closing.Load() {
				t.disconnects.Add(1)
				t.errs.add("connection lost: " + err.Error())
			}
			return
		}
		s.handle(t, s.buf, time.Now())
	}
}

// readAll appends everything r has to b, reusing b's capacity.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	if cap(b) == 0 {
		b = make([]byte, 0, 256)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func (s *subscriber) handle(t *tally, msg []byte, now time.Time) {
	if id, seq, sent, ok := t.parseFast(msg); ok {
		s.deliver(t, id, seq, sent, now)
		return
	}
	var env envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		t.errs.add(fmt.Sprintf("message is not JSON: %.100q", msg))
		return
	}
	switch env.Type {
	case "next", "data":
		var p struct {
			Data struct {
				StatusPosted *struct {
					ID   string `json:"id"`
					Text string `json:"text"`
				} `json:"statusPosted"`
			} `json:"data"`
			Errors json.RawMessage `json:"errors"`
		}
		if err := json.Unmarshal(env.Payload, &p); err != nil || p.Data.StatusPosted == nil || len(p.Errors) > 0 {
			t.subErrors.Add(1)
			t.errs.add(fmt.Sprintf("%s: %.200s", env.Type, env.Payload))
			return
		}
		id, err := strconv.ParseInt(p.Data.StatusPosted.ID, 10, 64)
		seq, sent, ok := t.parseText(p.Data.StatusPosted.Text)
		if err != nil || !ok {
			s.foreign++
			return
		}
		s.deliver(t, id, seq, sent, now)
	case "ping":
		_ = s.ws.SetWriteDeadline(now.Add(5 * time.Second))
		_ = s.ws.WriteMessage(websocket.TextMessage, pongMessage)
	case "ka", "pong", "connection_ack":
	case "error", "complete", "connection_error":
		s.ended = true
		t.subErrors.Add(1)
		t.errs.add(fmt.Sprintf("%s: %.200s", env.Type, env.Payload))
	default:
		t.errs.add(fmt.Sprintf("unexpected message: %.200s", msg))
	}
}

// deliver records one received status.
func (s *subscriber) deliver(t *tally, id int64, seq int, sent int64, now time.Time) {
	if seq >= t.total() {
		s.unexpected++
		return
	}
	st := t.steps[t.stepOf(seq)]
	if s.got.has(seq) {
		s.duplicates++
		st.duplicates.Add(1)
		return
	}
	s.got.set(seq)
	if id <= s.lastID {
		s.outOfOrder++
	} else {
		s.lastID = id
	}
	n := now.UnixNano()
	st.received.Add(1)
	st.latency.record(time.Duration(n - sent))
	for {
		l := st.lastRecv.Load()
		if n <= l || st.lastRecv.CompareAndSwap(l, n) {
			return
		}
	}
}

// fleet is the set of subscribed connections.
type fleet struct {
	subs    []*subscriber
	readers sync.WaitGroup
	errors  int
}

// connectAll opens n connections, concurrency at a time, and starts their
// read loops. It records each connection's dial+init+subscribe time in
// perConn and returns when every attempt has succeeded or failed.
func connectAll(ctx context.Context, c *connector, n, concurrency int, perConn *histogram, progress io.Writer) *fleet {
	fl := &fleet{}
	slots := make([]*subscriber, n)
	var failed, done atomic.Int64
	next := make(chan int)
	var workers sync.WaitGroup
	for range min(concurrency, n) {
		workers.Go(func() {
			for i := range next {
				t0 := time.Now()
				s, err := c.connect(ctx, i)
				done.Add(1)
				if err != nil {
					failed.Add(1)
					c.tally.errs.add("connect: " + err.Error())
					continue
				}
				perConn.record(time.Since(t0))
				slots[i] = s
				fl.readers.Go(func() { s.readLoop(c.tally) })
			}
		})
	}
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	progressDone.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				fmt.Fprintf(progress, "  … %d/%d connections attempted, %d failed\n", done.Load(), n, failed.Load())
			case <-stopProgress:
				return
			}
		}
	})
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	workers.Wait()
	close(stopProgress)
	progressDone.Wait()
	for _, s := range slots {
		if s != nil {
			fl.subs = append(fl.subs, s)
		}
	}
	fl.errors = n - len(fl.subs)
	return fl
}

// closeAll closes every connection (a close frame, then the socket) and
// waits up to timeout for the read loops to end.
func (fl *fleet) closeAll(t *tally, timeout time.Duration) error {
	t.closing.Store(true)
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	deadline := time.Now().Add(2 * time.Second)
	for _, s := range fl.subs {
		if s.body != nil {
			_ = s.body.Close()
			continue
		}
		_ = s.ws.WriteControl(websocket.CloseMessage, msg, deadline)
		_ = s.ws.Close()
	}
	done := make(chan struct{})
	go func() {
		fl.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("read loops still running %v after closing", timeout)
	}
}
