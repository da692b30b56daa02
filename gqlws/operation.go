package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// The operation lifecycle. A subscribe (start) that the connection admits
// becomes an operation: start registers it under its id and hands it to a
// goroutine of its own, which prepares it (parse, validate), runs it and
// relays its results until its stream ends, the client stops it (stop) or
// the connection closes. A shareable subscription leaves that goroutine
// for its group (group.go) as soon as it can; from then on the group
// delivers its results. Whoever ends an operation calls end, once it is no
// longer registered (finish or stop does both).

// operation is one running subscribe (start) of a connection.
type operation struct {
	conn   *conn
	id     string
	idJSON []byte      // id as a JSON string, spliced into each of its frames
	ended  atomic.Bool // stopped or finished: queued frames for it are dropped

	// share is set while the operation may still join a group; only the
	// operation's goroutine uses it.
	share *shareInfo
	// lastPos is the position of the last result queued for the operation
	// as a group member; guarded by the group's mutex.
	lastPos int64

	stateMu      sync.Mutex         // guards the fields below
	cancel       context.CancelFunc // cancels the operation's context; nil once released
	leave        func()             // leaves the operation's group, once it is a member
	life         *subscriberLife    // ends when the operation ends (see SubscriberContext); nil until asked for
	countedField string             // the subscription's root field while it is counted in Stats
	spanKey      string             // the key of SpanningFields it holds in use (see claimSpanning)
	spanScope    string             // and its scope there
}

// shareInfo says how an operation may join a group.
type shareInfo struct {
	key      string // the group's key (Transport.shareKey)
	field    string // the subscription's root field
	afterVar string // the variable holding the resume cursor, "" for none
	latest   bool   // a latest-value stream (Options.LatestFields): versions for positions
	spanning bool   // its group spans scopes (Options.SpanningFields)
	// joinGroup and joinHead are, for a plain subscriber of a spanning
	// field, the group that ran when its own stream caught up and that
	// group's head then: it joins that group from there.
	joinGroup *group
	joinHead  int64
	turn      int                // the class of its group's fan-outs (see turns)
	scope     string             // the caller's scope, in a group that spans scopes
	params    *graphql.RawParams // the operation's parameters, to start the group or resume privately
}

// decodeParams reads a subscribe (start) payload. It reports false unless
// the payload is an object with a non-empty query.
func decodeParams(raw json.RawMessage) (*graphql.RawParams, bool) {
	var p graphql.RawParams
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || dec.Decode(&p) != nil || p.Query == "" {
		return nil, false
	}
	return &p, true
}

// admit checks the limits for one more operation of the connection, under
// its operation context ctx: running at once (Options.MaxOperations),
// started per second (Options.Operations), then Options.Admit. It returns
// the RATE_LIMITED error to answer an operation over one with, and counts
// the connection's own refusals (Admit's are its owner's to count); the
// connection stays.
func (c *conn) admit(ctx context.Context) *gqlerror.Error {
	if err := c.admitHere(ctx); err != nil {
		return err
	}
	if admit := c.transport.opts.Admit; admit != nil {
		if err := admit(ctx); err != nil {
			return rateLimited(err.Error())
		}
	}
	return nil
}

// admitHere checks the connection's own operation limits (see admit).
func (c *conn) admitHere(ctx context.Context) *gqlerror.Error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if max := c.transport.opts.MaxOperations; max > 0 && len(c.ops) >= max {
		c.transport.refuse(ctx, "operations_per_connection")
		return rateLimited(fmt.Sprintf("too many operations on this connection (at most %d at once)", max))
	}
	if !c.starts.Allow(c.transport.opts.Operations, time.Now()) {
		c.transport.refuse(ctx, "operations_per_second")
		return rateLimited(fmt.Sprintf("operations started too fast on this connection (at most %g per second)", c.transport.opts.Operations.PerSecond))
	}
	return nil
}

// rateLimited is an operation's RATE_LIMITED error saying msg.
func rateLimited(msg string) *gqlerror.Error {
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": "RATE_LIMITED"}}
}

// start registers operation id (whose id must be free) and runs it in a
// goroutine of its own, under ctx, the connection's operation context.
func (c *conn) start(ctx context.Context, id string, params *graphql.RawParams) {
	now := graphql.Now()
	params.ReadTime = graphql.TraceTiming{Start: now, End: now}
	opCtx, cancel := context.WithCancel(graphql.StartOperationTrace(ctx))
	op := &operation{conn: c, id: id, idJSON: appendJSONString(nil, id), cancel: cancel}
	opCtx = withOperation(opCtx, op)
	c.stateMu.Lock()
	c.ops = append(c.ops, op)
	c.stateMu.Unlock()
	go c.prepare(opCtx, op, params)
}

// prepare parses and validates the operation, then runs it. A document
// that does not parse or validate is answered with error and nothing else,
// unless the client stopped the operation meanwhile.
// It runs on the operation's goroutine, not the connection's reader:
// parsing and validation need a deep stack, and a goroutine keeps the
// largest stack it ever needed, so the reader that every idle connection
// keeps stays small. A panic on that goroutine (outside the resolvers,
// whose panics run answers) ends the operation with an INTERNAL error.
func (c *conn) prepare(ctx context.Context, op *operation, params *graphql.RawParams) {
	defer c.transport.opts.Panics.Recover(ctx, whereOperation, func() { c.fail(ctx, op) })
	c.transport.opts.Panics.Point(whereOperation)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		stopped := op.ended.Load() // by the client: it hears nothing more of it
		c.finish(op)               // the id is free once the client reads the error
		if !stopped {
			c.writeErrors(op.id, resp.Errors)
		}
		return
	}
	if rc.Operation.Operation == ast.Subscription {
		op.count(rc)
	}
	if share, ok := c.transport.shareKey(ctx, rc); ok && (!share.spanning || c.transport.claimSpanning(op, share.key, share.scope)) {
		share.params = params
		op.share = &share
		if !share.latest && c.transport.joinsAtHead(rc, share.afterVar) && c.transport.joinAtHead(ctx, op) {
			return // a member: this goroutine ends, the group delivers
		}
	}
	c.run(graphql.WithOperationContext(ctx, rc), op, rc)
}

// run executes an operation and relays its results until it ends, is
// stopped, or joins a group; unless it joined one, it is finished when run
// returns. A stream that ends by itself is followed by complete; a stopped
// one is not (the client asked for the end). A panic in the executor is
// answered with error.
//
// A shareable subscription joins its group as soon as it knows its
// position: at its first result, or earlier, when it has replayed its
// history and waits for live events (then its private execution is stopped
// right there, and restarted from that position if the group cannot take it
// yet).
func (c *conn) run(ctx context.Context, op *operation, rc *graphql.OperationContext) {
	finished := false // finished here, or handed to a group
	defer func() {
		if !finished {
			c.finish(op)
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err := rc.Recover(ctx, r)
			c.writeErrors(op.id, gqlerror.List{c.presentPanic(ctx, err)})
		}
	}()
	for {
		outcome, idleAt := c.execute(ctx, op, rc)
		switch outcome {
		case joinedGroup:
			finished = true
			return
		case streamEnded:
			// Forget the id before saying complete: the client may reuse it
			// as soon as it reads the complete.
			finished = true
			stoppedByClient := ctx.Err() != nil
			c.finish(op)
			if !stoppedByClient {
				c.writeRaw(completeFrame(op.id))
			}
			return
		case stopped:
			return
		}
		// Idle at idleAt, execution stopped: join the group there, or
		// else go on privately from where we stopped (on its own from now
		// on when no group could start: tryJoin dropped op.share).
		params := op.paramsAt(idleAt)
		if op.share.plainSpanning() && c.transport.opts.StartAt != nil {
			ctx = c.transport.opts.StartAt(ctx, idleAt)
		}
		if c.transport.tryJoin(ctx, op, idleAt) {
			finished = true
			return
		}
		next, errs := c.exec.CreateOperationContext(ctx, params)
		if errs != nil {
			c.transport.opts.OnError(ctx, errs)
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
// the position it is idle at comes with the outcome). A result that cannot be encoded closes the
// connection with 4500.
func (c *conn) execute(ctx context.Context, op *operation, rc *graphql.OperationContext) (outcome, int64) {
	execCtx, stopExec := context.WithCancel(ctx)
	defer stopExec()
	var pos *positions
	var idleMu sync.Mutex
	idleAt := int64(-1) // set by the stream's goroutine
	var joinGroup *group
	var joinHead int64
	if op.share != nil {
		pos = &positions{}
		caughtUp := func(int64) {}
		// A resumer is caught up once it has replayed its history; a plain
		// subscription to a field whose group spans scopes, as soon as its
		// resolver has accepted it: it joins from there, without waiting for
		// a first event of its own, at the group's head of that moment if
		// the group runs (its own stream may number differently, and what
		// the group hands out between now and the join is then replayed
		// to it from the group's recent results).
		plain := op.share.plainSpanning()
		if op.share.afterVar != "" || plain {
			caughtUp = func(p int64) {
				idleMu.Lock()
				defer idleMu.Unlock()
				if idleAt >= 0 {
					return // the first report is the subscriber's now
				}
				if plain {
					joinGroup, joinHead = c.transport.groupHead(op.share.key)
				}
				idleAt = p
				stopExec() // runs in the stream's goroutine: nothing is sent after p
			}
		}
		execCtx = c.transport.recorder(execCtx, op.share.latest, pos.push, caughtUp)
	}
	responses, rctx := c.exec.DispatchOperation(execCtx, rc)
	for {
		resp := responses(rctx)
		if resp == nil {
			break
		}
		payload, err := json.Marshal(resp)
		if err != nil {
			c.transport.opts.OnError(ctx, fmt.Errorf("encode response: %w", err))
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
			if !op.share.latest {
				op.share = nil // results without positions: not a durable stream
			} // a latest value without a version: the next one may have one
		} else if c.transport.tryJoin(ctx, op, p) {
			return joinedGroup, 0
		}
	}
	idleMu.Lock()
	defer idleMu.Unlock()
	switch {
	case ctx.Err() != nil:
		return stopped, 0
	case idleAt >= 0 && op.share != nil:
		op.share.joinGroup, op.share.joinHead = joinGroup, joinHead
		return idle, idleAt
	default:
		return streamEnded, 0
	}
}

// presentPanic returns the error a recovered panic (err) is shown to the
// client as: err itself when it is a GraphQL error, else what the
// executor's error presenter makes of it.
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

// fail ends op after a panic: with an INTERNAL error, unless the client
// stopped it meanwhile.
func (c *conn) fail(ctx context.Context, op *operation) {
	stopped := op.ended.Load()
	c.finish(op)
	if !stopped {
		c.writeErrors(op.id, gqlerror.List{internalError(ctx)})
	}
}

// running reports whether an operation with id is running.
func (c *conn) running(id string) bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.opIndex(id) >= 0
}

// stop ends operation id at the client's request, reporting whether it was
// running. Nothing more is sent for it, and its id is free again.
func (c *conn) stop(id string) bool {
	c.stateMu.Lock()
	i := c.opIndex(id)
	var op *operation
	if i >= 0 {
		op = c.ops[i]
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.stateMu.Unlock()
	if op == nil {
		return false
	}
	op.end()
	return true
}

// opIndex returns the index of running operation id in c.ops, or -1.
// Called with c.stateMu held. (A connection runs a handful of operations
// at most: a slice costs less memory than a map, on every idle
// connection.)
func (c *conn) opIndex(id string) int {
	return slices.IndexFunc(c.ops, func(op *operation) bool { return op.id == id })
}

// finish unregisters op, which has ended by itself (unless a new operation
// reuses its id meanwhile), and ends it.
func (c *conn) finish(op *operation) {
	c.stateMu.Lock()
	if i := c.opIndex(op.id); i >= 0 && c.ops[i] == op {
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.stateMu.Unlock()
	op.end()
}

// count counts the operation among the running subscriptions of its root
// field (Stats.Subscriptions) until it ends; an operation that has ended
// already is not counted.
func (op *operation) count(rc *graphql.OperationContext) {
	field := rootField(rc)
	op.stateMu.Lock()
	defer op.stateMu.Unlock()
	if !op.ended.Load() {
		op.countedField = field
		op.conn.transport.countSubscription(field, 1)
	}
}

// setLeave records how the operation leaves the group it has joined; end
// calls it. If the operation has ended already (end marks it before it
// looks for leave), setLeave calls it at once.
func (op *operation) setLeave(leave func()) {
	op.stateMu.Lock()
	if !op.ended.Load() {
		op.leave, leave = leave, nil
	}
	op.stateMu.Unlock()
	if leave != nil {
		leave() // end has run already, and found no group to leave
	}
}

// end marks the operation over (its queued frames are dropped), cancels
// it, leaves its group and stops counting it. It may be called more than
// once; only the first call does anything but the marking.
func (op *operation) end() {
	op.ended.Store(true)
	op.release()
	op.stateMu.Lock()
	leave := op.leave
	op.leave = nil
	if op.life != nil {
		op.life.end()
	}
	if op.countedField != "" {
		op.conn.transport.countSubscription(op.countedField, -1)
		op.countedField = ""
	}
	spanKey, spanScope := op.spanKey, op.spanScope
	op.spanKey = ""
	op.stateMu.Unlock()
	if spanKey != "" {
		op.conn.transport.releaseSpanning(spanKey, spanScope)
	}
	if leave != nil {
		leave()
	}
}

// release cancels the operation's context and drops it, so that nothing of
// it stays reachable from the operation (a group member lives on without).
func (op *operation) release() {
	op.stateMu.Lock()
	cancel := op.cancel
	op.cancel = nil
	op.stateMu.Unlock()
	if cancel != nil {
		cancel()
	}
}
