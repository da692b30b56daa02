package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// runBaseline serves `loadgen baseline` until ctx ends.
func runBaseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	b := newBaseline()
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "loadgen baseline listening on %s (pid %d)\n", ln.Addr(), os.Getpid())
	select {
	case err = <-served:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(shutdownCtx)
		cancel()
	}
	b.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// baseline is the upper bound Switchboard's fan-out is compared with: a
// minimal server that speaks just enough of Switchboard's API for
// `loadgen run` to drive it unchanged, and does the least work a fan-out
// can do on gorilla/websocket: each post is JSON-encoded once, and each
// subscriber's frame is that payload with its subscription id spliced in,
// assembled in gorilla's write buffer.
//
// A post queues its payload on every subscribed connection, in id order,
// without waiting for any client. Each connection has one goroutine, reading;
// a writer goroutine exists only while frames are waiting in its queue, so
// the writes to many connections proceed in parallel on every CPU. Writes
// take a per-connection mutex and a write deadline; a connection whose write
// fails, or whose queue reaches maxQueue frames, is closed. A subscription
// with `after` first gets the events after it that are still among the
// latest maxQueue (as Switchboard's replay from memory would), then live
// events: posts that race with a subscribe are neither lost nor repeated.
type baseline struct {
	upgrader websocket.Upgrader

	postMu sync.Mutex // orders ids and the queueing of their events
	lastID int64
	recent [maxQueue][]byte // the payload of id n at n % maxQueue, for the latest maxQueue ids

	subMu sync.Mutex
	subs  []*bsub

	connMu   sync.Mutex
	conns    map[*bconn]struct{}
	closed   bool
	readers  sync.WaitGroup // one per connection
	flushers sync.WaitGroup // one per connection with frames waiting
}

const (
	maxQueue             = 1024
	baselineWriteTimeout = 10 * time.Second
)

func newBaseline() *baseline {
	return &baseline{
		upgrader: websocket.Upgrader{
			Subprotocols:    []string{"graphql-transport-ws", "graphql-ws"},
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			WriteBufferPool: &sync.Pool{},
			CheckOrigin:     func(*http.Request) bool { return true },
		},
		conns: make(map[*bconn]struct{}),
	}
}

// Close closes every connection and waits for their goroutines.
func (b *baseline) Close() {
	b.connMu.Lock()
	if b.closed {
		b.connMu.Unlock()
		return
	}
	b.closed = true
	for c := range b.conns {
		c.close()
	}
	b.connMu.Unlock()
	b.readers.Wait()
	b.flushers.Wait()
}

func (b *baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/graphql" && websocket.IsWebSocketUpgrade(r):
		b.serveWebSocket(w, r)
	case r.URL.Path == "/graphql" && r.Method == http.MethodPost:
		b.serveHTTP(w, r)
	case r.URL.Path == "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	default:
		http.NotFound(w, r)
	}
}

// serveHTTP answers the three operations loadgen sends: signIn, the newest
// status, and postStatus (with the text as the request's one variable).
func (b *baseline) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Query     string            `json:"query"`
		Variables map[string]string `json:"variables"`
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"errors":[{"message":%q}]}`, "baseline: bad request: "+err.Error())
		return
	}
	switch {
	case strings.Contains(req.Query, "postStatus"):
		var text string
		for _, v := range req.Variables {
			text = v
		}
		if text == "" {
			fmt.Fprint(w, `{"errors":[{"message":"text is empty","extensions":{"code":"BAD_USER_INPUT"}}]}`)
			return
		}
		id, ok := b.publish(text)
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"errors":[{"message":"shutting down","extensions":{"code":"UNAVAILABLE"}}]}`)
			return
		}
		fmt.Fprintf(w, `{"data":{"postStatus":{"id":"%d"}}}`, id)
	case strings.Contains(req.Query, "signIn"):
		fmt.Fprint(w, `{"data":{"signIn":{"token":"baseline"}}}`)
	case strings.Contains(req.Query, "statuses"):
		b.postMu.Lock()
		last := b.lastID
		b.postMu.Unlock()
		if last == 0 {
			fmt.Fprint(w, `{"data":{"statuses":{"edges":[]}}}`)
			return
		}
		fmt.Fprintf(w, `{"data":{"statuses":{"edges":[{"node":{"id":"%d"}}]}}}`, last)
	default:
		fmt.Fprint(w, `{"errors":[{"message":"baseline: unsupported operation"}]}`)
	}
}

// publish assigns text the next id, encodes its event once and queues it on
// every subscription. ok is false when the server is closing.
func (b *baseline) publish(text string) (id int64, ok bool) {
	b.postMu.Lock()
	defer b.postMu.Unlock()
	b.connMu.Lock()
	closed := b.closed
	b.connMu.Unlock()
	if closed {
		return 0, false
	}
	b.lastID++
	id = b.lastID
	type status struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	}
	var ev struct {
		Data struct {
			StatusPosted status `json:"statusPosted"`
		} `json:"data"`
	}
	ev.Data.StatusPosted = status{ID: strconv.FormatInt(id, 10), Text: text}
	payload, err := json.Marshal(ev)
	if err != nil {
		return 0, false
	}
	b.recent[id%maxQueue] = payload
	b.subMu.Lock()
	for _, sub := range b.subs {
		sub.c.enqueue(outgoing{sub: sub, payload: payload})
	}
	b.subMu.Unlock()
	return id, true
}

// subscribe queues the remembered events after `after` (none when after is
// negative) on sub, then adds it to the live subscriptions, both under postMu
// so that no post falls between the two.
func (b *baseline) subscribe(sub *bsub, after int64) {
	b.postMu.Lock()
	defer b.postMu.Unlock()
	if after >= 0 {
		for id := max(after, b.lastID-maxQueue) + 1; id <= b.lastID; id++ {
			sub.c.enqueue(outgoing{sub: sub, payload: b.recent[id%maxQueue]})
		}
	}
	b.addSub(sub)
}

// afterOf is the `after` variable of a subscribe payload, or -1.
func afterOf(payload json.RawMessage) int64 {
	var p struct {
		Variables map[string]any `json:"variables"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return -1
	}
	s, _ := p.Variables["a"].(string)
	after, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return after
}

// bsub is one subscription.
type bsub struct {
	c   *bconn
	id  []byte // the subscription id as a JSON string
	idx int    // position in baseline.subs, under subMu
}

func (b *baseline) addSub(sub *bsub) {
	b.subMu.Lock()
	sub.idx = len(b.subs)
	b.subs = append(b.subs, sub)
	b.subMu.Unlock()
}

func (b *baseline) removeSub(sub *bsub) {
	b.subMu.Lock()
	last := b.subs[len(b.subs)-1]
	b.subs[sub.idx], last.idx = last, sub.idx
	b.subs[len(b.subs)-1] = nil
	b.subs = b.subs[:len(b.subs)-1]
	b.subMu.Unlock()
}

// outgoing is a frame waiting in a connection's queue: a shared payload for
// one subscription, or (sub nil) a message of its own.
type outgoing struct {
	sub     *bsub
	payload []byte
}

// bconn is one WebSocket connection.
type bconn struct {
	ws       *websocket.Conn
	flushers *sync.WaitGroup
	legacy   bool
	subs     map[string]*bsub // owned by the reading goroutine

	qmu     sync.Mutex
	queue   []outgoing
	spare   []outgoing
	writing bool // a flush goroutine is running
	dead    bool

	wmu sync.Mutex // serialises writes to ws
}

// enqueue queues a frame without waiting for the client, starting a writer
// goroutine unless one is running. A connection maxQueue frames behind is
// closed.
func (c *bconn) enqueue(f outgoing) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.dead {
		return
	}
	if len(c.queue) >= maxQueue {
		c.dead = true
		_ = c.ws.Close()
		return
	}
	c.queue = append(c.queue, f)
	if !c.writing {
		c.writing = true
		c.flushers.Go(c.flush)
	}
}

// flush writes queued frames until the queue is empty.
func (c *bconn) flush() {
	for {
		c.qmu.Lock()
		batch := c.queue
		if len(batch) == 0 || c.dead {
			c.writing = false
			c.qmu.Unlock()
			return
		}
		c.queue, c.spare = c.spare[:0], nil
		c.qmu.Unlock()

		c.wmu.Lock()
		var err error
		for _, f := range batch {
			if err = c.writeFrame(f); err != nil {
				break
			}
		}
		c.wmu.Unlock()
		clear(batch)
		c.qmu.Lock()
		c.spare = batch[:0]
		if err != nil {
			c.dead = true
			_ = c.ws.Close()
		}
		c.qmu.Unlock()
	}
}

var (
	nextPrefix   = []byte(`{"type":"next","id":`)
	dataPrefix   = []byte(`{"type":"data","id":`)
	payloadInfix = []byte(`,"payload":`)
)

// writeFrame writes one frame, assembling it in gorilla's write buffer.
// The caller holds wmu.
func (c *bconn) writeFrame(f outgoing) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(baselineWriteTimeout))
	w, err := c.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	if f.sub != nil {
		if c.legacy {
			_, _ = w.Write(dataPrefix)
		} else {
			_, _ = w.Write(nextPrefix)
		}
		_, _ = w.Write(f.sub.id)
		_, _ = w.Write(payloadInfix)
		_, _ = w.Write(f.payload)
		_, _ = w.Write([]byte{'}'})
	} else {
		_, _ = w.Write(f.payload)
	}
	return w.Close()
}

// send queues a message of the connection's own (ack, pong, error).
func (c *bconn) send(msg string) { c.enqueue(outgoing{payload: []byte(msg)}) }

func (c *bconn) close() {
	c.qmu.Lock()
	c.dead = true
	c.qmu.Unlock()
	_ = c.ws.Close()
}

func (c *bconn) closeWith(code int, reason string) {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	c.wmu.Unlock()
}

// serveWebSocket runs one connection: its goroutine reads and answers
// connection_init, subscribe/start, complete/stop and ping.
func (b *baseline) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &bconn{
		ws:       ws,
		flushers: &b.flushers,
		legacy:   ws.Subprotocol() != "graphql-transport-ws",
		subs:     make(map[string]*bsub),
	}
	if !b.register(c) {
		_ = ws.Close()
		return
	}
	defer b.unregister(c)
	ws.SetReadLimit(64 << 10)
	acked := false
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil || !b.handle(c, msg, &acked) {
			return
		}
	}
}

// register counts c among the open connections, unless the baseline has
// closed.
func (b *baseline) register(c *bconn) bool {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = struct{}{}
	b.readers.Add(1)
	return true
}

// unregister ends c's subscriptions and closes it.
func (b *baseline) unregister(c *bconn) {
	for _, sub := range c.subs {
		b.removeSub(sub)
	}
	b.connMu.Lock()
	delete(b.conns, c)
	b.connMu.Unlock()
	c.close()
	b.readers.Done()
}

// handle answers one client message; false ends the connection.
func (b *baseline) handle(c *bconn, msg []byte, acked *bool) bool {
	var m envelope
	if err := json.Unmarshal(msg, &m); err != nil {
		c.closeWith(4400, "invalid message")
		return false
	}
	switch m.Type {
	case "connection_init":
		if *acked {
			c.closeWith(4429, "too many initialisation requests")
			return false
		}
		*acked = true
		c.send(`{"type":"connection_ack"}`)
		if c.legacy {
			c.send(`{"type":"ka"}`)
		}
	case "subscribe", "start":
		if !*acked {
			c.closeWith(4401, "unauthorized")
			return false
		}
		if _, dup := c.subs[m.ID]; dup || m.ID == "" {
			c.closeWith(4409, "subscriber for "+m.ID+" already exists")
			return false
		}
		if !strings.Contains(string(m.Payload), "statusPosted") {
			c.send(string(mustJSON(envelope{Type: "error", ID: m.ID, Payload: json.RawMessage(`[{"message":"baseline: only statusPosted"}]`)})))
			return true
		}
		sub := &bsub{c: c, id: mustJSON(m.ID)}
		c.subs[m.ID] = sub
		b.subscribe(sub, afterOf(m.Payload))
	case "complete", "stop":
		if sub, ok := c.subs[m.ID]; ok {
			delete(c.subs, m.ID)
			b.removeSub(sub)
		}
	case "ping":
		c.send(`{"type":"pong"}`)
	case "pong":
	case "connection_terminate":
		return false
	default:
		c.closeWith(4400, "invalid message")
		return false
	}
	return true
}
