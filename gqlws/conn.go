package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/ratelimit"
)

// conn is one WebSocket connection. Its read goroutine (serve) owns the
// protocol state; operations run in their own goroutines (operation.go)
// and write through the write path (write.go), which serialises frames.
// close may be called from anywhere; the first call takes effect.
type conn struct {
	transport *Transport
	ws        *websocket.Conn
	socket    *frameConn // the socket under ws, which the write path writes to directly
	addr      string     // the key of the client's address (request.AddrKey), for the per-address limit
	proto     protocol   // the negotiated subprotocol's adapter
	exec      graphql.GraphExecutor
	// turn is byConn's scratch for the shared turn that runs (one runs at
	// a time, and byConn on its leading goroutine): the turn's mark, where
	// the connection's frames start in its order, and how many.
	turn struct {
		mark  uint64
		at, n int32
	}

	writeMu sync.Mutex // serialises writes; guards pending and broken
	pending []byte     // bytes of frames the socket has not taken yet; they go out first
	broken  bool       // a write failed: nothing more can be written

	closed   atomic.Bool
	acked    atomic.Bool  // connection_init accepted: operations may start
	lastRead atomic.Int64 // unix nanoseconds of the last client message
	// writingSince is when the write in progress began (unix nanoseconds),
	// 0 when none is: the keepalive's watchdog closes a connection whose
	// write takes longer than WriteTimeout. (A deadline per write would cost
	// a timer update per frame.)
	writingSince atomic.Int64
	// expires is when the connection's grant ends (unix nanoseconds), 0 for
	// never; the watchdog closes it with 4403 then.
	expires atomic.Int64
	// session names what the grant came from (InitResult.Session), for
	// Transport.EndSessions; guarded by the transport's connsMu.
	session string

	queueMu    sync.Mutex    // guards the fields below
	queue      []queuedFrame // frames waiting for the flusher
	spareQueue []queuedFrame // the flusher's last batch, emptied, for the queue to reuse
	flushing   bool          // a flusher runs: new frames join the queue

	stateMu   sync.Mutex         // guards the fields below
	base      context.Context    // the connection's context (values of the upgrade request), for OnClose; set by setup
	cancel    context.CancelFunc // ends every operation of the connection; set by setup
	ops       []*operation       // the running operations (see opIndex)
	initSeen  bool               // a connection_init came
	initTimer *time.Timer        // closes the connection with 4408 unless connection_init comes; nil once it did
	starts    ratelimit.Bucket   // operations started, under Options.Operations
	release   func()             // InitResult.Release, until shut calls it
}

// newConn returns the connection over ws (whose socket is socket) speaking
// proto. Its client's close frame ends it; setup and serve bring it to life.
func newConn(t *Transport, ws *websocket.Conn, socket *frameConn, proto protocol, exec graphql.GraphExecutor) *conn {
	c := &conn{transport: t, ws: ws, socket: socket, proto: proto, exec: exec}
	socket.write = c.writeExternal
	// A client's close frame is answered with its own code, once; it is
	// counted as the client's, whatever code the client chose.
	ws.SetCloseHandler(func(code int, _ string) error {
		c.shut(code, "", false, closedByClient)
		return nil
	})
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// setup sets the connection up (its context and the init timeout) and
// returns its context, which keeps the upgrade request's values (request id)
// but not its cancellation: the request ends when Do returns.
func (c *conn) setup(base context.Context) context.Context {
	ctx, cancel := context.WithCancel(context.WithoutCancel(base))
	c.stateMu.Lock()
	c.base, c.cancel = ctx, cancel
	c.initTimer = time.AfterFunc(c.transport.opts.InitTimeout, func() {
		if !c.acked.Load() {
			c.closeGuarded(CloseInitTimeout, "Connection initialisation timeout")
		}
	})
	c.stateMu.Unlock()
	return ctx
}

// serve is the connection's goroutine: it waits for each client message and
// has it read and handled, until the connection ends; then it closes the
// connection.
//
// The waiting is all it does itself (see readwait.go): the socket is watched
// on a shallow path and each message is read and handled on a goroutine of
// its own, because decoding JSON, verifying tokens and writing answers need
// a deep stack and a goroutine keeps the largest stack it ever used. So the
// goroutine that every idle connection keeps holds a 2 KiB stack, not 8.
// Messages are rare (init, subscribe, pong), so the extra goroutine costs
// nothing that matters. Where the socket cannot be watched, serve reads
// itself and only the handling moves.
//
// A panic, here or in the handling of a message, closes the connection with
// 4500 (see panics.go).
func (c *conn) serve(ctx context.Context) {
	defer c.close(CloseNormal, "")
	defer c.transport.opts.Panics.Recover(ctx, whereConnection, func() { c.close(CloseInternalError, reasonInternal) })
	c.transport.opts.Panics.Point(whereConnection)
	next := make(chan context.Context, 1)
	for {
		if c.socket.waitReadable() {
			go func() { next <- c.guarded(ctx, whereMessage, func() context.Context { return c.receive(ctx) }) }()
		} else {
			typ, data, err := c.readMessage()
			go func() {
				next <- c.guarded(ctx, whereMessage, func() context.Context { return c.received(ctx, typ, data, err) })
			}()
		}
		if ctx = <-next; ctx == nil || c.closed.Load() {
			return
		}
	}
}

// receive reads one message and handles it, as received says.
func (c *conn) receive(ctx context.Context) context.Context {
	typ, data, err := c.readMessage()
	return c.received(ctx, typ, data, err)
}

// received handles the outcome of one read. It returns the connection's
// context (changed by connection_init), or nil when the connection ends: a
// message over the read limit closes it with 1009; a read error other than
// the client's close is reported to Options.OnError.
func (c *conn) received(ctx context.Context, typ int, data []byte, err error) context.Context {
	if err != nil {
		switch {
		case errors.Is(err, websocket.ErrReadLimit):
			c.closeWith(websocket.CloseMessageTooBig, "Message too big", true)
		case c.closed.Load(), websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		default:
			c.transport.opts.OnError(ctx, fmt.Errorf("websocket read: %w", err))
		}
		return nil
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c.handle(ctx, typ, data)
}

// handle decodes one client message of WebSocket message type typ and acts
// on its kind; what the protocol does not accept, its adapter refuses (see
// validate.go), and a text message that is not valid UTF-8 closes the
// connection with 1007. It returns the connection's context (changed by
// connection_init).
func (c *conn) handle(ctx context.Context, typ int, data []byte) context.Context {
	if typ == websocket.TextMessage && !utf8.Valid(data) {
		c.close(CloseInvalidPayload, "Invalid UTF-8")
		return ctx
	}
	m, ok := decodeMessage(typ, data)
	if !ok {
		c.proto.refuse(c, refusal{reason: malformedMessage})
		return ctx
	}
	switch kind := c.proto.kind(m.Type); kind {
	case kindInit:
		return c.handleInit(ctx, &m)
	case kindPing, kindPong: // only graphql-transport-ws has them; a ping may come before connection_init
		if !objectOrNull(m.Payload) {
			c.proto.refuse(c, refusal{reason: malformedMessage})
		} else if kind == kindPing {
			c.writeRaw(pongFrame(m.Payload))
		}
	case kindSubscribe:
		c.handleSubscribe(ctx, &m)
	case kindComplete:
		c.handleComplete(&m)
	case kindTerminate:
		c.close(CloseNormal, "")
	default:
		id, _ := m.operationID()
		c.proto.refuse(c, refusal{reason: unknownType, id: id})
	}
	return ctx
}

// handleInit answers connection_init: once accepted by Options.Init, with
// the ack, and returns the context the connection's operations run under;
// a second one, or one Init refuses, is refused. A panic in Init closes the
// connection with 4500 (then it returns nil).
func (c *conn) handleInit(ctx context.Context, m *clientMessage) context.Context {
	if c.initReceived() {
		c.proto.refuse(c, refusal{reason: repeatedInit})
		return ctx
	}
	var opsCtx context.Context
	var ack map[string]any
	var err error
	if c.guarded(ctx, whereInit, func() context.Context {
		opsCtx, ack, err = c.runInit(ctx, m.Payload)
		return ctx
	}) == nil {
		return nil // closed with 4500
	}
	if err != nil {
		c.proto.refuse(c, refusal{reason: initRefused, err: err})
		return ctx
	}
	c.proto.acknowledge(c, ack)
	return opsCtx
}

// initReceived reports whether a connection_init came before, and records
// that one came now.
func (c *conn) initReceived() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	seen := c.initSeen
	c.initSeen = true
	return seen
}

// runInit disarms the init timeout and runs Options.Init on the init
// payload raw (absent or null: an empty object; anything but an object:
// errBadPayload). When Init accepts, runInit records the grant's session
// (refusing a session that ended meanwhile), arms the grant's expiry, marks
// the connection acknowledged and returns the operations' context and the
// ack payload.
func (c *conn) runInit(ctx context.Context, raw json.RawMessage) (context.Context, map[string]any, error) {
	c.stateMu.Lock()
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil
	}
	c.stateMu.Unlock()
	payload := map[string]any{}
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &payload); err != nil {
			return ctx, nil, errBadPayload
		}
	}
	res, err := c.transport.opts.Init(ctx, payload)
	if err != nil {
		return ctx, nil, err
	}
	if res.Session != "" && !c.transport.claimSession(c, res.Session) {
		return ctx, nil, errSessionEnded
	}
	if res.Context != nil {
		ctx = res.Context
	}
	if !res.Expires.IsZero() {
		c.expires.Store(res.Expires.UnixNano()) // the keepalive's watchdog enforces it
	}
	if res.Release != nil {
		// shut takes it; if shut has already run, it is released here.
		c.stateMu.Lock()
		closed := c.closed.Load()
		if !closed {
			c.release = res.Release
		}
		c.stateMu.Unlock()
		if closed {
			res.Release()
		}
	}
	c.acked.Store(true)
	return ctx, res.Ack, nil
}

// handleSubscribe starts the operation a subscribe (start) asks for, under
// ctx, unless the protocol refuses the message (no id, no query, no ack
// yet, a running id) or a limit refuses the operation (an error message
// with RATE_LIMITED; the connection stays).
func (c *conn) handleSubscribe(ctx context.Context, m *clientMessage) {
	id, ok := m.operationID()
	if !ok {
		c.proto.refuse(c, refusal{reason: subscribeWithoutID})
		return
	}
	params, hasQuery := decodeParams(m.Payload)
	if reason, refused := c.proto.subscribeRefusal(c.acked.Load(), hasQuery); refused {
		c.proto.refuse(c, refusal{reason: reason, id: id})
		return
	}
	if c.proto.replacesRunningID() {
		c.stop(id)
	} else if c.running(id) {
		c.proto.refuse(c, refusal{reason: duplicateID, id: id})
		return
	}
	if err := c.admit(ctx); err != nil {
		c.writeErrors(id, gqlerror.List{err})
		return
	}
	c.start(ctx, id, params)
}

// handleComplete stops the operation a complete (stop) names, if it runs,
// and answers as the protocol does; one without an id is refused.
func (c *conn) handleComplete(m *clientMessage) {
	id, ok := m.operationID()
	if !ok {
		c.proto.refuse(c, refusal{reason: completeWithoutID})
		return
	}
	if c.stop(id) {
		c.proto.answerStop(c, id)
	}
}

// writeRaw sends a frame that belongs to no operation (frame is JSON),
// blocking until the socket takes it; nothing once the connection is
// closed.
func (c *conn) writeRaw(frame []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if !c.closed.Load() {
		c.writeLocked(frame)
	}
}

// writeControlMessage sends {"id"?, "payload"?, "type"} (in that order: it
// is encoded from a map), with id unless it is "" and payload unless it is
// nil. A payload that cannot be encoded closes the connection with 4500.
func (c *conn) writeControlMessage(typ, id string, payload any) {
	m := map[string]any{"type": typ}
	if id != "" {
		m["id"] = id
	}
	if payload != nil {
		m["payload"] = payload
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.close(CloseInternalError, "Internal server error")
		return
	}
	c.writeRaw(b)
}

// writeErrors sends operation id's error message: nothing follows it. Errors
// that cannot be encoded close the connection with 4500.
func (c *conn) writeErrors(id string, errs gqlerror.List) {
	payload, err := json.Marshal(errs)
	if err != nil {
		c.close(CloseInternalError, "Internal server error")
		return
	}
	c.writeRaw(operationFrame("error", id, payload))
}

// close ends the connection with a close frame (best effort: a client that
// does not read may never see it), cancels its operations and forgets it.
func (c *conn) close(code int, reason string) { c.closeWith(code, reason, false) }

// closeWith is close; with linger it first reads and discards what the
// client is still sending (for up to a second), so that closing a socket
// with unread data does not reset the connection before the client has read
// the close frame.
func (c *conn) closeWith(code int, reason string, linger bool) {
	c.shut(code, reason, linger, strconv.Itoa(code))
}

// closedByClient labels the closes a client asked for (its code is its
// own: counting by it would let clients mint metric labels).
const closedByClient = "client"

// reasonSlowConsumer is the reason of the 1013 closes of clients that do
// not read fast enough (counted in Stats.SlowConsumers).
const reasonSlowConsumer = "Slow consumer"

// shut ends the connection as closeWith says, counting it in Stats.Closes
// under label. Only the first call on a connection does anything.
func (c *conn) shut(code int, reason string, linger bool, label string) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.transport.countClose(label)
	if reason == reasonSlowConsumer {
		c.transport.slowConsumers.Add(1)
	}
	c.writeClose(code, reason)
	if linger {
		nc := c.socket.Conn // the bare socket: no need to follow frames here
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 4<<20))
	}
	if c.ws != nil {
		_ = c.ws.Close()
	} else {
		_ = c.socket.Conn.Close() // a connection made over a bare socket (the tests' and benchmarks' benchConnOver)
	}
	c.stateMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	ops, base, release := c.ops, c.base, c.release
	c.ops, c.release = nil, nil
	c.stateMu.Unlock()
	for _, op := range ops {
		op.end()
	}
	c.transport.forget(c)
	if release != nil {
		release()
	}
	if base != nil {
		c.transport.opts.OnClose(base, code, label == closedByClient)
	}
}
