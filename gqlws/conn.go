package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/ratelimit"
)

// conn is one WebSocket connection. Its read goroutine (serve) owns the
// protocol state; operations run in their own goroutines and write through
// write, which serialises frames. close may be called from anywhere, once
// effective.
type conn struct {
	t      *Transport
	ws     *websocket.Conn
	fc     *frameConn // the socket under ws
	addr   string     // the client's address, for the per-address limit
	proto  string
	exec   graphql.GraphExecutor
	cancel context.CancelFunc // ends every operation of the connection

	wmu     sync.Mutex // serialises writes; guards pending and broken
	pending []byte     // bytes of frames the socket has not taken yet; they go out first
	broken  bool       // a write failed: nothing more can be written

	closed   atomic.Bool
	acked    atomic.Bool
	lastRead atomic.Int64 // unix nanoseconds of the last client message
	// writingSince is when the write in progress began (unix nanoseconds),
	// 0 when none is: the keepalive's watchdog closes a connection whose
	// write takes longer than WriteTimeout. (A deadline per write would cost
	// a timer update per frame.)
	writingSince atomic.Int64
	// expires is when the connection's grant ends (unix nanoseconds), 0 for
	// never; the watchdog closes it with 4403 then.
	expires atomic.Int64

	qmu     sync.Mutex
	queue   []outFrame
	spare   []outFrame
	writing bool

	mu        sync.Mutex
	ops       []*operation
	initSeen  bool
	initTimer *time.Timer
	starts    ratelimit.Bucket // operations started, under Options.Operations
}

// operation is one running subscribe/start.
type operation struct {
	conn   *conn
	id     string
	idJS   []byte // id as a JSON string
	cancel context.CancelFunc
	ended  atomic.Bool // stopped or finished: queued frames for it are dropped

	// share is set while the operation may still join a group.
	share *shareInfo
	// lastPos is the position of the last result queued for the operation
	// as a group member; guarded by the group's mutex.
	lastPos int64

	mu    sync.Mutex
	leave func() // leaves the operation's group, once it is a member
	field string // the subscription's root field while it is counted
}

// shareInfo says how an operation may join a group.
type shareInfo struct {
	key      string
	afterVar string
	params   *graphql.RawParams
}

// counted counts the operation among the running subscriptions of its
// root field until it ends.
func (op *operation) counted(rc *graphql.OperationContext) {
	field := "unknown"
	if sel := rc.Operation.SelectionSet; len(sel) > 0 {
		if f, ok := sel[0].(*ast.Field); ok {
			field = f.Name
		}
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if !op.ended.Load() {
		op.field = field
		op.conn.t.countSubscription(field, 1)
	}
}

func (op *operation) setLeave(f func()) {
	op.mu.Lock()
	op.leave = f
	op.mu.Unlock()
}

// end marks the operation over, cancels it and leaves its group.
func (op *operation) end() {
	op.ended.Store(true)
	op.release()
	op.mu.Lock()
	leave := op.leave
	op.leave = nil
	if op.field != "" {
		op.conn.t.countSubscription(op.field, -1)
		op.field = ""
	}
	op.mu.Unlock()
	if leave != nil {
		leave()
	}
}

// release cancels the operation's context and drops it, so that nothing of
// it stays reachable from the operation (a group member lives on without).
func (op *operation) release() {
	op.mu.Lock()
	cancel := op.cancel
	op.cancel = nil
	op.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// outFrame is a frame waiting in a connection's queue: an operation's result
// (payload) or its complete.
type outFrame struct {
	op       *operation
	result   *sharedResult
	complete bool
}

// message is a protocol message of either protocol.
type message struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// id returns the message's id when it is a non-empty string.
func (m *message) id() (string, bool) {
	if len(m.ID) == 0 {
		return "", false
	}
	var id string
	if err := json.Unmarshal(m.ID, &id); err != nil || id == "" {
		return "", false
	}
	return id, true
}

func newConn(t *Transport, ws *websocket.Conn, fc *frameConn, proto string, exec graphql.GraphExecutor) *conn {
	c := &conn{t: t, ws: ws, fc: fc, proto: proto, exec: exec}
	fc.write = c.writeExternal
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
	c.mu.Lock()
	c.cancel = cancel
	c.initTimer = time.AfterFunc(c.t.opts.InitTimeout, func() {
		if !c.acked.Load() {
			c.close(CloseInitTimeout, "Connection initialisation timeout")
		}
	})
	c.mu.Unlock()
	return ctx
}

// serve is the connection's goroutine: it waits for each client message and
// has it read and handled, until the connection ends.
//
// The waiting is all it does itself (see readwait.go): the socket is watched
// on a shallow path and each message is read and handled on a goroutine of
// its own, because decoding JSON, verifying tokens and writing answers need
// a deep stack and a goroutine keeps the largest stack it ever used. So the
// goroutine that every idle connection keeps holds a 2 KiB stack, not 8.
// Messages are rare (init, subscribe, pong), so the extra goroutine costs
// nothing that matters. Where the socket cannot be watched, serve reads
// itself and only the handling moves.
func (c *conn) serve(ctx context.Context) {
	defer c.close(CloseNormal, "")
	next := make(chan context.Context, 1)
	for {
		if c.fc.waitReadable() {
			go func() { next <- c.receive(ctx) }()
		} else {
			typ, data, err := c.readMessage()
			go func() { next <- c.received(ctx, typ, data, err) }()
		}
		if ctx = <-next; ctx == nil || c.closed.Load() {
			return
		}
	}
}

// receive reads one message and handles it.
func (c *conn) receive(ctx context.Context) context.Context {
	typ, data, err := c.readMessage()
	return c.received(ctx, typ, data, err)
}

// received handles the outcome of one read. It returns the connection's
// context (changed by connection_init), or nil when the connection ends.
func (c *conn) received(ctx context.Context, typ int, data []byte, err error) context.Context {
	if err != nil {
		switch {
		case errors.Is(err, websocket.ErrReadLimit):
			c.closeWith(websocket.CloseMessageTooBig, "Message too big", true)
		case c.closed.Load(), websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		default:
			c.t.opts.OnError(ctx, fmt.Errorf("websocket read: %w", err))
		}
		return nil
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c.handle(ctx, typ, data)
}

// handle decodes and handles one client message and returns the
// connection's context (changed by connection_init).
func (c *conn) handle(ctx context.Context, typ int, data []byte) context.Context {
	var m message
	if typ != websocket.TextMessage || json.Unmarshal(data, &m) != nil || m.Type == "" {
		c.invalid(reasonInvalid)
		return ctx
	}
	if c.proto == TransportWS {
		return c.handleTransportWS(ctx, &m)
	}
	return c.handleLegacy(ctx, &m)
}

// invalid answers a message that is not a valid protocol message: 4400 on
// graphql-transport-ws, connection_error on the legacy protocol.
func (c *conn) invalid(reason string) {
	if c.proto == TransportWS {
		c.close(CloseInvalidMessage, reason)
		return
	}
	c.writeControlMessage("connection_error", "", map[string]any{"message": reason})
}

// handleTransportWS handles one graphql-transport-ws message and returns the
// connection's context (changed by connection_init).
func (c *conn) handleTransportWS(ctx context.Context, m *message) context.Context {
	switch m.Type {
	case "connection_init":
		if c.initReceived() {
			c.close(CloseTooManyInitRequests, "Too many initialisation requests")
			return ctx
		}
		newCtx, ack, err := c.init(ctx, m.Payload)
		if err != nil {
			c.refuseInit(err)
			return ctx
		}
		c.writeControlMessage("connection_ack", "", ack)
		return newCtx
	case "ping":
		c.writeRaw(pongFrame(m.Payload))
	case "pong":
	case "subscribe":
		id, ok := m.id()
		if !ok {
			c.close(CloseInvalidMessage, reasonInvalid)
			return ctx
		}
		if !c.acked.Load() {
			c.close(CloseUnauthorized, "Unauthorized")
			return ctx
		}
		params, ok := decodeParams(m.Payload)
		if !ok {
			c.close(CloseInvalidMessage, reasonInvalid)
			return ctx
		}
		c.mu.Lock()
		exists := c.op(id) >= 0
		c.mu.Unlock()
		if exists {
			c.close(CloseSubscriberExists, "Subscriber for "+id+" already exists")
			return ctx
		}
		if err := c.admit(); err != nil {
			c.writeErrors(id, gqlerror.List{err})
			return ctx
		}
		c.start(ctx, id, params)
	case "complete":
		id, ok := m.id()
		if !ok {
			c.close(CloseInvalidMessage, reasonInvalid)
			return ctx
		}
		c.stop(id)
	default:
		c.close(CloseInvalidMessage, reasonInvalid)
	}
	return ctx
}

// handleLegacy handles one subscriptions-transport-ws message, as that
// library's server did.
func (c *conn) handleLegacy(ctx context.Context, m *message) context.Context {
	switch m.Type {
	case "connection_init":
		if c.initReceived() {
			c.writeControlMessage("connection_error", "", map[string]any{"message": "Too many initialisation requests"})
			return ctx
		}
		newCtx, ack, err := c.init(ctx, m.Payload)
		if err != nil {
			c.refuseInit(err)
			return ctx
		}
		c.writeControlMessage("connection_ack", "", ack)
		c.writeRaw(kaFrame)
		return newCtx
	case "start":
		id, ok := m.id()
		if !ok {
			c.writeControlMessage("connection_error", "", map[string]any{"message": "start needs an id"})
			return ctx
		}
		params, ok := decodeParams(m.Payload)
		if !ok {
			c.writeErrors(id, gqlerror.List{{Message: "invalid payload: a query string is required"}})
			return ctx
		}
		if !c.acked.Load() {
			c.writeErrors(id, gqlerror.List{{Message: "connection_init first"}})
			return ctx
		}
		// A start for a running id replaces it, as subscriptions-transport-ws did.
		c.stop(id)
		if err := c.admit(); err != nil {
			c.writeErrors(id, gqlerror.List{err})
			return ctx
		}
		c.start(ctx, id, params)
	case "stop":
		id, ok := m.id()
		if !ok {
			return ctx
		}
		if c.stop(id) {
			c.writeControlMessage("complete", id, nil)
		}
	case "connection_terminate":
		c.close(CloseNormal, "")
	default:
		id, _ := m.id()
		c.writeControlMessage("error", id, map[string]any{"message": "Invalid message type!"})
	}
	return ctx
}

// initReceived reports whether a connection_init came before, and records
// that one came now.
func (c *conn) initReceived() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := c.initSeen
	c.initSeen = true
	return seen
}

var errBadPayload = errors.New("connection_init payload must be an object")

// reasonInvalid is the close reason of 4400, as the reference server words it.
const reasonInvalid = "Invalid message received"

// refuseInit answers a connection_init that init refused: 4400 for a
// malformed payload, 4403 for a refused grant. The legacy protocol first
// says why in a connection_error, as subscriptions-transport-ws did.
func (c *conn) refuseInit(err error) {
	if c.proto == LegacyWS {
		c.writeControlMessage("connection_error", "", map[string]any{"message": err.Error()})
	}
	if errors.Is(err, errBadPayload) {
		c.close(CloseInvalidMessage, reasonInvalid)
		return
	}
	c.close(CloseForbidden, "Forbidden")
}

// init runs the InitFunc and, on success, arms the grant's expiry and marks
// the connection acknowledged. It returns the operations' context and the
// ack payload.
func (c *conn) init(ctx context.Context, raw json.RawMessage) (context.Context, map[string]any, error) {
	c.mu.Lock()
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil
	}
	c.mu.Unlock()
	payload := map[string]any{}
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &payload); err != nil {
			return ctx, nil, errBadPayload
		}
	}
	res, err := c.t.opts.Init(ctx, payload)
	if err != nil {
		return ctx, nil, err
	}
	if res.Context != nil {
		ctx = res.Context
	}
	if !res.Expires.IsZero() {
		c.expires.Store(res.Expires.UnixNano()) // the keepalive's watchdog enforces it
	}
	c.acked.Store(true)
	return ctx, res.Ack, nil
}

// decodeParams reads a subscribe/start payload.
func decodeParams(raw json.RawMessage) (*graphql.RawParams, bool) {
	var p graphql.RawParams
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || dec.Decode(&p) != nil || p.Query == "" {
		return nil, false
	}
	return &p, true
}

// start runs an operation: parse, validate, then execute in its own
// goroutine. A document that does not validate is answered with error and
// nothing else.
// admit checks the connection's operation limits for one more operation:
// running at once, and started per second. Over either, the operation gets
// a RATE_LIMITED error and the connection stays.
func (c *conn) admit() *gqlerror.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max := c.t.opts.MaxOperations; max > 0 && len(c.ops) >= max {
		c.t.countRefused("operations_per_connection")
		return rateLimited(fmt.Sprintf("too many operations on this connection (at most %d at once)", max))
	}
	if !c.starts.Allow(c.t.opts.Operations, time.Now()) {
		c.t.countRefused("operations_per_second")
		return rateLimited(fmt.Sprintf("operations started too fast on this connection (at most %g per second)", c.t.opts.Operations.PerSecond))
	}
	return nil
}

// rateLimited is an operation's RATE_LIMITED error.
func rateLimited(msg string) *gqlerror.Error {
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": "RATE_LIMITED"}}
}

func (c *conn) start(ctx context.Context, id string, params *graphql.RawParams) {
	start := graphql.Now()
	params.ReadTime = graphql.TraceTiming{Start: start, End: start}
	opCtx, cancel := context.WithCancel(graphql.StartOperationTrace(ctx))
	op := &operation{conn: c, id: id, idJS: appendJSONString(nil, id), cancel: cancel}
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
	go c.prepare(opCtx, id, op, params)
}

// prepare parses and validates the operation, then runs it. It runs on the
// operation's goroutine, not the connection's reader: parsing and
// validation need a deep stack, and a goroutine keeps the largest stack it
// ever needed, so the reader that every idle connection keeps stays small.
func (c *conn) prepare(ctx context.Context, id string, op *operation, params *graphql.RawParams) {
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		c.finish(id, op) // the id is free once the client reads the error
		c.writeErrors(id, resp.Errors)
		return
	}
	if rc.Operation.Operation == ast.Subscription {
		op.counted(rc)
	}
	if key, afterVar, ok := c.t.shareKey(ctx, rc); ok {
		op.share = &shareInfo{key: key, afterVar: afterVar, params: params}
	}
	c.run(graphql.WithOperationContext(ctx, rc), id, op, rc)
}

// run executes an operation and relays its results until it ends, is
// stopped, or joins a group. A stream that ends by itself is followed by
// complete; a stopped one is not (the client asked for the end).
//
// A shareable subscription joins its group as soon as it knows its
// position: at its first result, or earlier, when it has replayed its
// history and waits for live events (then its private execution is stopped
// right there, and restarted from that position if the group cannot take it
// yet).
func (c *conn) run(ctx context.Context, id string, op *operation, rc *graphql.OperationContext) {
	joined := false
	defer func() {
		if !joined {
			c.finish(id, op)
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err := rc.Recover(ctx, r)
			c.writeErrors(id, gqlerror.List{c.presentPanic(ctx, err)})
		}
	}()
	for {
		outcome, idleAt := c.execute(ctx, id, op, rc)
		switch outcome {
		case joinedGroup:
			joined = true
			return
		case streamEnded:
			// Forget the id before saying complete: the client may reuse it
			// as soon as it reads the complete.
			joined = true // finish is done here, not deferred
			stoppedByClient := ctx.Err() != nil
			c.finish(id, op)
			if !stoppedByClient {
				c.writeRaw(completeFrame(id))
			}
			return
		case stopped:
			return
		}
		// Idle at idleAt, execution stopped: join the group there.
		if c.t.tryJoin(ctx, op, idleAt) {
			joined = true
			return
		}
		if op.share == nil {
			return
		}
		// Not joinable yet: go on privately from where we stopped.
		next, errs := c.exec.CreateOperationContext(ctx, op.paramsAt(idleAt))
		if errs != nil {
			c.t.opts.OnError(ctx, errs)
			c.close(CloseInternalError, "Internal server error")
			return
		}
		rc = next
		ctx = graphql.WithOperationContext(ctx, rc)
	}
}

// outcome says how a private execution ended.
type outcome int

const (
	streamEnded outcome = iota // the resolver's stream ended by itself
	stopped                    // the operation is over: stopped, or failed
	joinedGroup                // it joined its group
	idle                       // it was stopped, caught up, to join its group
)

// execute runs rc privately and writes its results, until the stream ends,
// the operation stops, it joins its group, or it is caught up and idle (then
// idleAt is its position).
func (c *conn) execute(ctx context.Context, id string, op *operation, rc *graphql.OperationContext) (outcome, int64) {
	execCtx, stopExec := context.WithCancel(ctx)
	defer stopExec()
	var pos *positions
	var idleMu sync.Mutex
	idleAt := int64(-1) // set by the stream's goroutine
	if op.share != nil {
		pos = &positions{}
		caughtUp := func(int64) {}
		if op.share.afterVar != "" {
			caughtUp = func(p int64) {
				idleMu.Lock()
				idleAt = p
				idleMu.Unlock()
				stopExec() // runs in the stream's goroutine: nothing is sent after p
			}
		}
		execCtx = c.t.opts.Positions(execCtx, pos.push, caughtUp)
	}
	responses, rctx := c.exec.DispatchOperation(execCtx, rc)
	for {
		resp := responses(rctx)
		if resp == nil {
			break
		}
		payload, err := json.Marshal(resp)
		if err != nil {
			c.t.opts.OnError(ctx, fmt.Errorf("encode response: %w", err))
			c.close(CloseInternalError, "Internal server error")
			return stopped, 0
		}
		if !c.writeResult(ctx, op, payload) {
			return stopped, 0
		}
		if op.share == nil {
			continue
		}
		if p, ok := pos.pop(); !ok {
			op.share = nil // results without positions: not a durable stream
		} else if c.t.tryJoin(ctx, op, p) {
			return joinedGroup, 0
		}
	}
	idleMu.Lock()
	defer idleMu.Unlock()
	switch {
	case ctx.Err() != nil:
		return stopped, 0
	case idleAt >= 0 && op.share != nil:
		return idle, idleAt
	default:
		return streamEnded, 0
	}
}

func (c *conn) presentPanic(ctx context.Context, err error) *gqlerror.Error {
	var gqlErr *gqlerror.Error
	if errors.As(err, &gqlErr) {
		return gqlErr
	}
	resp := c.exec.DispatchError(ctx, gqlerror.List{gqlerror.WrapPath(graphql.GetPath(ctx), err)})
	if len(resp.Errors) > 0 {
		return resp.Errors[0]
	}
	return &gqlerror.Error{Message: "internal error"}
}

// stop ends operation id, reporting whether it was running.
func (c *conn) stop(id string) bool {
	c.mu.Lock()
	i := c.op(id)
	var op *operation
	if i >= 0 {
		op = c.ops[i]
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.mu.Unlock()
	if op == nil {
		return false
	}
	op.end()
	return true
}

// op returns the index of running operation id in c.ops, or -1. Called
// with c.mu held. (A connection runs a handful of operations at most: a
// slice costs less memory than a map, on every idle connection.)
func (c *conn) op(id string) int {
	return slices.IndexFunc(c.ops, func(op *operation) bool { return op.id == id })
}

// finish forgets op once it has ended (unless its id was reused meanwhile).
func (c *conn) finish(id string, op *operation) {
	c.mu.Lock()
	if i := c.op(id); i >= 0 && c.ops[i] == op {
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.mu.Unlock()
	op.end()
}

// writeRaw sends a frame that belongs to no operation.
func (c *conn) writeRaw(frame []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.closed.Load() {
		c.writeLocked(frame)
	}
}

// writeControlMessage sends {type, id?, payload?}.
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

// writeErrors sends an operation's error message: nothing follows it.
func (c *conn) writeErrors(id string, errs gqlerror.List) {
	payload, err := json.Marshal(errs)
	if err != nil {
		c.close(CloseInternalError, "Internal server error")
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.closed.Load() {
		c.writeLocked(opFrame("error", id, payload))
	}
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

// shut ends the connection as closeWith says, counting it under label.
func (c *conn) shut(code int, reason string, linger bool, label string) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.t.countClose(label)
	c.writeClose(code, reason)
	if linger {
		nc := c.fc.Conn // the bare socket: no need to follow frames here
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 4<<20))
	}
	_ = c.ws.Close()
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	ops := c.ops
	c.ops = nil
	c.mu.Unlock()
	for _, op := range ops {
		op.end()
	}
	c.t.forget(c)
}

// Frames, built without reflection.

var kaFrame = []byte(`{"type":"ka"}`)

func pongFrame(payload json.RawMessage) []byte {
	if len(payload) == 0 || bytes.Equal(payload, []byte("null")) {
		return []byte(`{"type":"pong"}`)
	}
	return append(append([]byte(`{"type":"pong","payload":`), payload...), '}')
}

func completeFrame(id string) []byte {
	b := appendJSONString([]byte(`{"type":"complete","id":`), id)
	return append(b, '}')
}

func opFrame(typ, id string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(id)+32)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
