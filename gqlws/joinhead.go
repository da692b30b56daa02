package gqlws

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// Plain subscriptions join at the head.
//
// A subscription without a resume cursor asks for the events from now on.
// When its results are the same for every caller and its resolver
// authorizes nothing (a public field named in Options.OpenFields), it needs
// no execution of its own: it becomes a member of its group at once, from
// the last result the group handed out, on the goroutine that prepared it,
// and costs no goroutine from then on. With no group yet, it starts one
// whose leader subscribes from the stream's head. Other plain
// subscriptions run their resolver first (it may refuse the caller) and
// join as resumers do.

// joinsAtHead reports whether op, prepared as rc with the resume cursor in
// variable afterVar ("" for none), joins its group at once.
func (t *Transport) joinsAtHead(rc *graphql.OperationContext, afterVar string) bool {
	if afterVar != "" && rc.Variables[afterVar] != nil {
		return false // it resumes
	}
	field, ok := rc.Operation.SelectionSet[0].(*ast.Field) // shareKey checked the shape
	return ok && slices.Contains(t.opts.PublicFields, field.Name) && slices.Contains(t.opts.OpenFields, field.Name)
}

// joinAtHead makes op, a plain subscription to an open field, a member of
// its group from the group's head on, starting the group if there is none.
// It reports false when op must run privately instead: the group could not
// start, or its stream reports no positions.
func (t *Transport) joinAtHead(ctx context.Context, op *operation) bool {
	for range 3 { // a group that ends as op arrives is replaced; bounded all the same
		g := t.groupAtHead(ctx, op)
		if g == nil {
			return false
		}
		if g.joinAtHead(op) {
			op.setLeave(func() { g.leave(op, "") })
			op.share = nil
			op.release()
			return true
		}
	}
	return false
}

// groupAtHead returns op's running group, waiting for it to start if it
// is starting, or starts one from the stream's head; nil when none could
// start.
func (t *Transport) groupAtHead(ctx context.Context, op *operation) *group {
	t.groupsMu.Lock()
	if g := t.groups[op.share.key]; g != nil && !g.isClosed() {
		t.groupsMu.Unlock()
		<-g.started
		return g
	}
	g, lctx := t.newGroup(ctx, op.share)
	g.turn = op.share.turn
	t.putGroup(g)
	t.groupsMu.Unlock()
	if !t.startAtHead(lctx, g, op) {
		return nil
	}
	return g
}

// startAtHead starts g's leader, under lctx, on op's document without a cursor, on this
// goroutine up to the resolver's return, so that the stream has reported
// where it starts (stream.Feed reports a subscription without a cursor as
// caught up before returning it). Otherwise, or when the start fails or
// panics, g is closed and forgotten, and startAtHead reports false.
func (t *Transport) startAtHead(lctx context.Context, g *group, op *operation) (ok bool) {
	defer func() {
		if !ok {
			g.abandon()
		}
		close(g.started)
	}()
	var start atomic.Int64
	start.Store(-1)
	lctx = t.opts.Positions(graphql.StartOperationTrace(lctx), g.pos.push, func(p int64) { start.CompareAndSwap(-1, p) })
	if t.opts.EventTimes != nil {
		lctx = t.opts.EventTimes(lctx, g.pos.at)
	}
	rc, errs := op.conn.exec.CreateOperationContext(lctx, op.share.params)
	if errs != nil {
		return false
	}
	lctx = graphql.WithOperationContext(lctx, rc)
	responses, rctx := op.conn.exec.DispatchOperation(lctx, rc)
	head := start.Load()
	if head < 0 {
		return false // an error, or a stream without positions
	}
	g.mu.Lock()
	g.head = head
	g.mu.Unlock()
	go g.run(rctx, func() (graphql.ResponseHandler, context.Context) { return responses, rctx })
	return true
}

// joinAtHead adds op from the group's head on: it receives every result
// after the last one handed out. It reports false when the group has
// closed.
func (g *group) joinAtHead(op *operation) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	op.lastPos = g.head
	g.members[op] = struct{}{}
	return true
}

// abandon closes a group whose leader never ran, and forgets it.
func (g *group) abandon() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.transport.forgetGroup(g)
}
