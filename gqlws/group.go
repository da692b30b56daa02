package gqlws

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/switchboardhq/switchboard/live"
)

// Shared live delivery.
//
// Subscriptions with the same document (the same shape: see shapeOf), the
// same variables (but for the resume cursor) and the same authorization
// scope receive the same results.
// They are served by one group: the group's leader executes the operation
// once per event and encodes the result once; each member's frame is the
// prepared payload with the member's operation id spliced in. A subscriber
// that resumes with after first runs privately (replaying its own history
// from the database) and joins the group as soon as it has caught up with
// it; from then on it costs no goroutine and no execution of its own.
//
// Latest-value streams (Options.LatestFields) share the same way, with the
// versions of their values for positions: the leader executes and encodes
// each new value once; a member that joins gets the group's newest result
// if it is newer than its own first one, and a result still queued for a
// slow member is replaced by the next (see conn.enqueue).
//
// Results are never shared across scopes: a subscription field is shared
// between all callers only when Options.PublicFields names it; otherwise the
// scope is the caller's identity (Options.Scope), and without one nothing is
// shared. A group of a field named in Options.SpanningFields has members of
// every scope: its leader's stream says which scopes each event is for, and
// an event for some scopes is handed to the members of those scopes only.

// ringSize is how many recent results a group keeps to let a subscriber that
// is slightly behind join without a gap.
const ringSize = 256

// MaxRingScopes bounds the scopes named by the audiences of the results a
// group that spans scopes keeps (a result for 8,000 users names 8,000):
// past it the oldest are forgotten, ringSize or not. A busy room's room
// lists would otherwise keep 256 audiences of every member, tens of
// megabytes of live heap for every collection to scan; a subscriber joins
// within a few results of the head. Another transport that shares such
// fields keeps its recent results within the same bound.
const MaxRingScopes = 1 << 16

// group is one shared subscription.
type group struct {
	transport *Transport
	key       string
	field     string             // the root field of its subscriptions
	follows   []string           // the fields that field follows (Options.Followers)
	cancel    context.CancelFunc // stops the leader
	pos       *positions         // the positions the leader's stream announces
	latest    bool               // a latest-value stream: only the newest result counts
	spanning  bool               // its members are of several scopes (Options.SpanningFields)
	turn      int                // the class of its fan-outs (see turns)
	started   chan struct{}      // closed once the leader runs, or failed to start (then closed is set)
	ready     chan struct{}      // closed once the leader has its first result, or ended
	readyOnce sync.Once

	mu      sync.Mutex // guards the fields below
	closed  bool       // the group takes no more members: its leader ended, or its last member left
	head    int64      // position of the last result fanned out
	members map[*operation]struct{}
	scopes  map[string][]*operation // the members by scope, in a group that spans scopes (a slice: most scopes have one or two)
	ring    []ringEntry             // the last results, oldest first
	scoped  int                     // the scopes the ring's audiences name (see MaxRingScopes)
	newest  map[string]ringEntry    // a latest-value group that spans scopes: the newest result by scope, for the scopes with members and the last strays
	strays  *live.Recent[string]    // the last scopes without members whose newest result is kept
}

// ringEntry is one of a group's recent results, its position and, in a
// group that spans scopes, the scopes it is for ("" among them: all).
type ringEntry struct {
	pos    int64
	scopes []string
	result *sharedResult
}

// visibleTo reports whether e is for members of scope.
func (e ringEntry) visibleTo(scope string) bool {
	return slices.Contains(e.scopes, "") || slices.Contains(e.scopes, scope)
}

// positions is the FIFO of event positions a stream announces before each
// event it hands to a subscription resolver (see Options.Positions).
type positions struct {
	mu         sync.Mutex  // guards the fields below
	q          []int64     // the positions announced and not yet popped, oldest first
	ats        []time.Time // when each queued event happened, if the stream says
	scopes     [][]string  // the scopes each queued event is for, if the stream says
	nextAt     time.Time   // the time announced for the next position
	nextScopes []string    // the scopes announced for the next position
}

// audience records a scope the next event is for (see Options.Audiences).
func (p *positions) audience(scope string) {
	p.mu.Lock()
	p.nextScopes = append(p.nextScopes, scope)
	p.mu.Unlock()
}

// at records when the next event happened (see Options.EventTimes).
func (p *positions) at(t time.Time) {
	p.mu.Lock()
	p.nextAt = t
	p.mu.Unlock()
}

// push appends pos, and the time announced for it, to the queue.
func (p *positions) push(pos int64) {
	p.mu.Lock()
	p.q = append(p.q, pos)
	p.ats = append(p.ats, p.nextAt)
	p.scopes = append(p.scopes, p.nextScopes)
	p.nextAt, p.nextScopes = time.Time{}, nil
	p.mu.Unlock()
}

// pop removes and returns the oldest position; ok is false when none is
// queued.
func (p *positions) pop() (pos int64, ok bool) {
	ev, ok := p.popEvent()
	return ev.pos, ok
}

// announced is what a stream announced of one event.
type announced struct {
	pos    int64
	at     time.Time // when it happened; zero when unknown
	scopes []string  // the scopes it is for ("" among them: all); none when not reported
}

// popEvent is pop with all that was announced of the event.
func (p *positions) popEvent() (announced, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) == 0 {
		return announced{}, false
	}
	ev := announced{pos: p.q[0], at: p.ats[0], scopes: p.scopes[0]}
	p.q, p.ats, p.scopes = p.q[1:], p.ats[1:], p.scopes[1:]
	return ev, true
}

// shareKey returns how an operation's live results may be shared: the key
// of its group, the name of the variable that holds its resume cursor (the
// root field's after argument), and for a group that spans scopes the
// caller's scope. ok is false for operations that must run on their own.
func (t *Transport) shareKey(ctx context.Context, rc *graphql.OperationContext) (share shareInfo, ok bool) {
	if rc.Operation == nil || rc.Operation.Operation != ast.Subscription || len(rc.Operation.SelectionSet) != 1 {
		return share, false
	}
	field, isField := rc.Operation.SelectionSet[0].(*ast.Field)
	if !isField {
		return share, false
	}
	share.latest = t.isLatest(field.Name)
	if share.latest {
		if t.opts.Versions == nil {
			return share, false
		}
	} else if t.opts.Positions == nil {
		return share, false
	}
	if arg := field.Arguments.ForName("after"); arg != nil && !share.latest {
		if arg.Value.Kind != ast.Variable {
			return share, false // a literal cursor is part of the document
		}
		share.afterVar = arg.Value.Raw
	}
	var scope string
	switch {
	case slices.Contains(t.opts.PublicFields, field.Name):
		scope = "public"
	case t.opts.Scope == nil:
		return share, false
	case t.spans(field.Name):
		if share.scope = t.opts.Scope(ctx); share.scope == "" {
			return share, false
		}
		share.spanning, scope = true, "spanning"
	default:
		scope = "caller:" + t.opts.Scope(ctx)
	}
	vars := map[string]any{} // none and {} alike
	maps.Copy(vars, rc.Variables)
	delete(vars, share.afterVar)
	varsJSON, err := json.Marshal(vars) // map keys are sorted
	if err != nil {
		return share, false
	}
	share.key = scope + "\x00" + shapeOf(rc, field, share.afterVar) + "\x00" + string(varsJSON)
	share.field = field.Name
	if share.latest || slices.Contains(t.opts.FollowingFields, field.Name) {
		share.turn = latestTurn
	}
	return share, true
}

// shapeOf renders what of rc's document decides its results, field being
// its root field: the field with its alias, arguments, directives and
// selections, the operation's variable definitions and directives, and the
// document's fragments, in one canonical layout; not the operation's name,
// spacing or comments, nor the resume cursor (the after argument held by
// afterVar, and that variable's definition). So a subscription with after
// and one without, or two clients' copies of one document that differ in
// layout, share a group.
func shapeOf(rc *graphql.OperationContext, field *ast.Field, afterVar string) string {
	f := *field
	op := *rc.Operation
	if afterVar != "" {
		f.Arguments = slices.DeleteFunc(slices.Clone(f.Arguments), func(a *ast.Argument) bool { return a.Name == "after" })
		op.VariableDefinitions = slices.DeleteFunc(slices.Clone(op.VariableDefinitions), func(v *ast.VariableDefinition) bool { return v.Variable == afterVar })
	}
	op.Name = ""
	op.SelectionSet = ast.SelectionSet{&f}
	doc := &ast.QueryDocument{Operations: ast.OperationList{&op}}
	if rc.Doc != nil {
		doc.Fragments = rc.Doc.Fragments
	}
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithCompacted()).FormatQueryDocument(doc)
	return b.String()
}

// spans reports whether the subscription field named field shares one
// group across scopes (Options.SpanningFields).
func (t *Transport) spans(field string) bool {
	return t.opts.Audiences != nil && slices.Contains(t.opts.SpanningFields, field)
}

// isLatest reports whether the subscription field named field is a
// latest-value stream (Options.LatestFields).
func (t *Transport) isLatest(field string) bool { return slices.Contains(t.opts.LatestFields, field) }

// recorder returns ctx under which the operation's stream reports the
// positions (or, for a latest-value stream, the versions) of its results to
// sent, and where it is caught up to caughtUp (durable streams only).
func (t *Transport) recorder(ctx context.Context, latest bool, sent, caughtUp func(int64)) context.Context {
	if latest {
		return t.opts.Versions(ctx, sent)
	}
	return t.opts.Positions(ctx, sent, caughtUp)
}

// tryJoin moves op, whose private execution has just delivered the result
// at position pos, into its group, creating the group if there is none. It
// reports whether op is now a member (its private execution must stop).
func (t *Transport) tryJoin(ctx context.Context, op *operation, pos int64) bool {
	t.groupsMu.Lock()
	g := t.groups[op.share.key]
	if g == nil || g.isClosed() {
		var err error
		if g, err = t.startGroup(ctx, op, pos); err != nil {
			t.groupsMu.Unlock()
			t.opts.OnError(ctx, err)
			op.share = nil // run on its own from now on
			return false
		}
		t.putGroup(g)
	}
	t.groupsMu.Unlock()
	<-g.started
	if g == op.share.joinGroup {
		// Caught up while this group ran: from its head of that moment
		// (another group would number from its own start).
		pos = max(pos, op.share.joinHead)
	}
	if !g.join(op, pos) {
		return false
	}
	if g.latest {
		// The member's own stream keeps its value read (see live.Watchers)
		// until the leader's stream has it too: else the leader would read
		// the same state again, and send it as new.
		select {
		case <-g.ready:
		case <-ctx.Done():
		}
	}
	// A member needs neither its parameters nor its own context any more:
	// let them go (an idle subscription should cost as little as possible).
	op.share = nil
	op.release()
	return true
}

// markReady says that the leader has its first result, or has ended.
func (g *group) markReady() { g.readyOnce.Do(func() { close(g.ready) }) }

// paramsAt returns op's parameters with its resume cursor set to pos; a
// plain subscription's, as they are (it starts from the head again).
func (op *operation) paramsAt(pos int64) *graphql.RawParams {
	if op.share.afterVar == "" {
		return op.share.params
	}
	params := *op.share.params
	params.Variables = maps.Clone(params.Variables)
	if params.Variables == nil {
		params.Variables = map[string]any{}
	}
	params.Variables[op.share.afterVar] = strconv.FormatInt(pos, 10)
	return &params
}

// startGroup starts a group whose leader executes op's document from
// position pos on. Called with t.groupsMu held.
func (t *Transport) startGroup(ctx context.Context, op *operation, pos int64) (*group, error) {
	params := op.paramsAt(pos)
	g, lctx := t.newGroup(ctx, op.share)
	close(g.started)
	g.head, g.latest, g.spanning, g.turn = pos, op.share.latest, op.share.spanning, op.share.turn
	lctx = t.recorder(graphql.StartOperationTrace(lctx), g.latest, g.pos.push, func(int64) {})
	if g.spanning {
		g.scopes, g.newest = make(map[string][]*operation), make(map[string]ringEntry)
		lctx = t.opts.Audiences(lctx, g.pos.audience)
	}
	if t.opts.EventTimes != nil {
		lctx = t.opts.EventTimes(lctx, g.pos.at)
	}
	if op.share.afterVar == "" && !g.latest && t.opts.StartAt != nil {
		// Its members joined at pos, and members that resume may join it
		// too (one document with after and one without share a group).
		lctx = t.opts.StartAt(lctx, pos)
	}
	rc, errs := op.conn.exec.CreateOperationContext(lctx, params)
	if errs != nil {
		g.cancel()
		return nil, errs
	}
	lctx = graphql.WithOperationContext(lctx, rc)
	go g.run(lctx, func() (graphql.ResponseHandler, context.Context) { return op.conn.exec.DispatchOperation(lctx, rc) })
	return g, nil
}

// newGroup returns a group for subscriptions shared as share says, not
// started, and the context its leader runs under: ctx's values, cancelled
// by the group's cancel.
func (t *Transport) newGroup(ctx context.Context, share *shareInfo) (*group, context.Context) {
	lctx, cancel := context.WithCancel(asLeader(context.WithoutCancel(ctx)))
	return &group{transport: t, key: share.key, field: share.field, cancel: cancel, pos: &positions{}, members: make(map[*operation]struct{}),
		started: make(chan struct{}), ready: make(chan struct{})}, lctx
}

// putGroup makes g the running group under its key. Called with
// t.groupsMu held.
func (t *Transport) putGroup(g *group) {
	t.groups[g.key] = g
	if _, ok := t.opts.Followers[g.field]; ok {
		t.linkedGroups[g] = struct{}{}
	}
	for field, followers := range t.opts.Followers {
		if slices.Contains(followers, g.field) {
			t.linkedGroups[g] = struct{}{}
			g.follows = append(g.follows, field)
		}
	}
}

// followWait returns, for a large fan-out of g's event to n members, the
// fields whose fan-outs its turn waits for and how long at most (see
// Options.Followers): an event that others follow waits for theirs; one
// that follows others waits for theirs when none began within FollowWait
// (it is ready before the event it follows, which is yet to come). None
// when the groups of those fields hold fewer than n/2 members, so that an
// event that few of its subscribers see with the other goes at once, and
// none after a wait of g's field in vain, until one of those comes (see
// turns.missed).
func (t *Transport) followWait(g *group, n int) ([]string, time.Duration) {
	others := t.opts.Followers[g.field]
	if len(others) == 0 {
		others = g.follows
		if len(others) == 0 || t.ledWithin(others, t.opts.FollowWait) {
			return nil, 0
		}
	}
	if t.fanOuts.hasMissed(g.field) {
		return nil, 0
	}
	members := 0
	t.groupsMu.Lock()
	for other := range t.linkedGroups {
		if slices.Contains(others, other.field) {
			other.mu.Lock()
			members += len(other.members)
			other.mu.Unlock()
		}
	}
	t.groupsMu.Unlock()
	if 2*members < n {
		return nil, 0
	}
	return others, t.opts.FollowWait
}

// ledWithin reports whether a fan-out of one of fields (which have
// followers) began within d.
func (t *Transport) ledWithin(fields []string, d time.Duration) bool {
	since := time.Now().Add(-d).UnixNano()
	for _, field := range fields {
		if led := t.led[field]; led != nil && led.Load() >= since {
			return true
		}
	}
	return false
}

// run is the leader: it executes the operation (dispatch starts it, or
// returns it started) once per event, encodes the result once and queues
// it for every member. A panic ends the group: its members get an INTERNAL
// error (see panics.go).
func (g *group) run(ctx context.Context, dispatch func() (graphql.ResponseHandler, context.Context)) {
	failed := false
	defer func() { g.end(failed) }()
	defer g.markReady()
	defer g.transport.opts.Panics.Recover(ctx, whereGroup, func() { failed = true })
	responses, rctx := dispatch()
	var batch []*operation
	for {
		resp := responses(rctx)
		if resp == nil {
			return
		}
		g.markReady()
		g.transport.opts.Panics.Point(whereGroup)
		ev, ok := g.pos.popEvent()
		pos := ev.pos
		if !ok && g.latest && len(resp.Errors) == 0 {
			// A state its source gave no version (see chat.Presence.Watch):
			// a newer, versioned one follows; members wait for that.
			continue
		}
		payload, err := json.Marshal(resp)
		if !ok || err != nil {
			return // not a positioned stream after all: members fall back below
		}
		if g.spanning && len(ev.scopes) == 0 {
			// Never guess whose event it is: a resolver that ignored its
			// audience recorder.
			g.transport.opts.OnError(ctx, fmt.Errorf("gqlws: shared result at %d names no scope: its group ends", pos))
			failed = true
			return
		}
		// Compressed once for the members that negotiated it, whether any
		// does or not: one run per event, nothing per member.
		result := newSharedResult(payload, g.transport.opts.Compression)
		g.mu.Lock()
		g.head = pos
		batch = batch[:0]
		for m := range g.audience(ev.scopes) {
			if pos > m.lastPos {
				m.lastPos = pos
				batch = append(batch, m)
			}
		}
		g.remember(ringEntry{pos: pos, scopes: ev.scopes, result: result})
		g.mu.Unlock()
		// Outside the lock: a subscriber that joins meanwhile is not in the
		// batch and gets this result from the ring; the next result waits
		// until this one is handed to every member.
		job := &fanOutJob{members: batch, result: queuedFrame{result: result, latest: g.latest}, class: g.turn, field: g.field, follows: g.follows}
		if largeFanOut(len(batch)) {
			job.awaits, job.wait = g.transport.followWait(g, len(batch))
		}
		if !g.transport.fanOut(ctx, job) {
			failed = true // a part of the members missed the result: they start again
			return
		}
		if ctx.Err() != nil {
			return // ending: the fan-out may not have had its turn
		}
		g.transport.framesWritten.Add(uint64(len(batch))) // once per event, not per frame: no shared counter on the hot path
		if !ev.at.IsZero() && g.transport.opts.OnDelivered != nil && len(batch) > 0 {
			g.transport.opts.OnDelivered(time.Since(ev.at))
		}
		clear(batch)
	}
}

// remember keeps e for members that join later: the last ringSize results,
// or in a latest-value group only the newest (by scope, when it spans
// scopes: a scope's value may come while its subscriber is on its way in,
// and it is what that subscriber must end with). Called with g.mu held.
func (g *group) remember(e ringEntry) {
	switch {
	case g.latest && g.spanning:
		for _, scope := range e.scopes {
			g.newest[scope] = e
			if len(g.scopes[scope]) == 0 {
				g.keepStray(scope)
			}
		}
		return
	case g.latest:
		clear(g.ring)
		g.ring, g.scoped = g.ring[:0], 0
	case len(g.ring) == ringSize:
		g.forgetOldest()
	}
	g.ring = append(g.ring, e)
	g.scoped += len(e.scopes)
	for g.scoped > MaxRingScopes && len(g.ring) > 1 {
		g.forgetOldest()
	}
}

// forgetOldest drops the ring's oldest result. Called with g.mu held.
func (g *group) forgetOldest() {
	g.scoped -= len(g.ring[0].scopes)
	n := copy(g.ring, g.ring[1:])
	g.ring[n] = ringEntry{}
	g.ring = g.ring[:n]
}

// keepStray notes that the group keeps the newest value of scope, which
// has no member: the last ringSize such scopes are kept (a subscriber is
// on its way in for moments), older ones forgotten unless they have
// members by then. Called with g.mu held.
func (g *group) keepStray(scope string) {
	if g.strays == nil {
		g.strays = live.NewRecent[string](ringSize)
	}
	if old, ok := g.strays.Add(scope); ok && len(g.scopes[old]) == 0 {
		delete(g.newest, old)
	}
}

// newestFor returns the newest result a member of scope may be handed in a
// latest-value group. Called with g.mu held.
func (g *group) newestFor(scope string) (ringEntry, bool) {
	if !g.spanning {
		if n := len(g.ring); n > 0 {
			return g.ring[n-1], true
		}
		return ringEntry{}, false
	}
	own, ok := g.newest[scope]
	if all, allOK := g.newest[""]; allOK && (!ok || all.pos > own.pos) {
		return all, true
	}
	return own, ok
}

// audience returns the members an event for scopes goes to: all of them,
// unless the group spans scopes and the event is for some only. Called with
// g.mu held.
func (g *group) audience(scopes []string) iter.Seq[*operation] {
	return func(yield func(*operation) bool) {
		if !g.spanning || slices.Contains(scopes, "") {
			for m := range g.members {
				if !yield(m) {
					return
				}
			}
			return
		}
		for _, scope := range scopes {
			for _, m := range g.scopes[scope] {
				if !yield(m) {
					return
				}
			}
		}
	}
}

// fanOutChunk is the fewest members worth a goroutine of their own.
const fanOutChunk = 512

// largeFanOut reports whether a fan-out to n members is split over
// goroutines, and so takes a turn (see fanOut).
func largeFanOut(n int) bool { return min(runtime.GOMAXPROCS(0), n/fanOutChunk) > 1 }

// fanOut hands job's result to every member's connection. The writes are
// made there and then when the socket takes them (see write.go), so a large
// group is split over one goroutine per processor, and fanOut returns when
// every member has its frame written or queued. It reports false when one
// of those goroutines panicked (recovered by the transport's guard): then
// some members missed the result.
//
// Large fan-outs take turns (Transport.fanOuts): each already keeps every
// processor busy, and running two at once would only make both finish
// late. The fan-outs that waited share the next turn, which writes each
// connection's frames of all of them at once (see turns): when one event
// feeds several groups (a broadcast's notification, and the unread counts
// it moves), a subscriber of both gets both frames in one write. A small
// fan-out takes a turn too when the running one waits for it (see
// Options.Followers).
func (t *Transport) fanOut(ctx context.Context, job *fanOutJob) bool {
	if len(job.follows) > 0 {
		t.fanOuts.came(job.follows)
	}
	if led := t.led[job.field]; led != nil {
		led.Store(time.Now().UnixNano())
		t.fanOuts.came(t.opts.Followers[job.field])
	}
	if !largeFanOut(len(job.members)) && !t.fanOuts.awaits(job.field) {
		deliver(job.members, job.result)
		return true
	}
	return t.fanOuts.take(ctx, job, func(batch []*fanOutJob) (bool, []*fanOutJob) {
		return t.runTurn(ctx, batch)
	})
}

// runTurn runs the fan-outs of one turn, split over one goroutine per
// processor, and reports false when one of those panicked. A fan-out alone
// goes member by member; several go connection by connection, each
// connection's frames (in batch's order) written together. Fan-outs that
// ask for a turn meanwhile ride along (see riders): it returns them too.
//
// A turn that waited for followers takes the fan-outs that came meanwhile
// into its batch before it writes anything, rather than as riders: a rider
// is adopted by one of the turn's goroutines while the others write on,
// and the connections they write meanwhile would get the follower's frame
// in a second write.
func (t *Transport) runTurn(ctx context.Context, batch []*fanOutJob) (bool, []*fanOutJob) {
	var joined []*fanOutJob
	if job := followersDue(batch); job != nil {
		t.fanOuts.awaitFollowers(ctx, job)
		if joined = t.fanOuts.adopt(); len(joined) > 0 {
			batch = slices.Concat(batch, joined)
			slices.SortStableFunc(batch, func(a, b *fanOutJob) int { return cmp.Compare(a.class, b.class) })
		}
	}
	r := &riders{turns: &t.fanOuts}
	ok := t.runPass(ctx, batch, r)
	if rest := r.rest(); len(rest) > 0 {
		ok = t.runPass(ctx, rest, nil) && ok
	}
	return ok, append(joined, r.jobs()...)
}

// runPass hands batch's frames out in parallel, with those of r's riders
// (nil: none) to the connections not written yet, and reports false when a
// goroutine panicked.
func (t *Transport) runPass(ctx context.Context, batch []*fanOutJob, r *riders) bool {
	var parts []func()
	if len(batch) == 1 {
		job := batch[0]
		n := max(1, min(runtime.GOMAXPROCS(0), len(job.members)/fanOutChunk))
		for part := range slices.Chunk(job.members, (len(job.members)+n-1)/n) {
			parts = append(parts, func() { deliverWith(part, job.result, r) })
		}
	} else {
		// Turns run one at a time: the frames of this one reuse the last
		// one's memory, let go of once written (clear: the results and
		// operations they name are not kept for the next).
		scratch := &t.fanOuts.scratch
		for _, part := range byConn(batch, scratch) {
			parts = append(parts, func() { deliverByConn(part, r) })
		}
		defer func() { clear(scratch.frames); clear(scratch.conns) }()
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, part := range parts {
		wg.Go(func() {
			if t.opts.Panics.Do(ctx, whereGroup, part) {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// riders are the fan-outs that asked for a turn while one ran, adopted by
// it (turns.adopt): their frames ride in the same write as the turn's own
// to each connection the turn has not written yet, and the rest go out
// right after the turn's own. A broadcast's unread counts are ready a few
// milliseconds after its notification, while the notification is being
// written: this way most subscribers of both get both in one write.
type riders struct {
	turns   *turns
	mu      sync.Mutex                  // one adoption at a time
	adopted atomic.Pointer[[]*adoption] // one per adopted fan-out; replaced, never changed
}

// adoption is one adopted fan-out: where each connection's members are,
// and which members' frames have been taken, along with the turn's frames
// or by rest. Its memory is a map entry per connection and a flag per
// member, not a frame per member.
type adoption struct {
	job   *fanOutJob
	first map[*conn]int32   // each connection's first member, by index
	more  map[*conn][]int32 // further members of a connection, in order (rare: nil until one)
	taken []atomic.Bool     // by member
}

// newAdoption indexes job's members by connection.
func newAdoption(job *fanOutJob) *adoption {
	a := &adoption{job: job, first: make(map[*conn]int32, len(job.members)), taken: make([]atomic.Bool, len(job.members))}
	for i, m := range job.members {
		if _, seen := a.first[m.conn]; !seen {
			a.first[m.conn] = int32(i)
			continue
		}
		if a.more == nil {
			a.more = map[*conn][]int32{}
		}
		a.more[m.conn] = append(a.more[m.conn], int32(i))
	}
	return a
}

// take appends member i's frame to frames unless it was taken already.
func (a *adoption) take(i int32, frames []queuedFrame) []queuedFrame {
	if !a.taken[i].CompareAndSwap(false, true) {
		return frames
	}
	f := a.job.result
	f.op = a.job.members[i]
	return append(frames, f)
}

// poll adopts the fan-outs waiting for a turn, if any. A goroutine of
// the turn that finds one waiting while another adopts it waits for that
// adoption (a map of its members by connection: a millisecond for 8,000)
// rather than write on without its frames: each connection it wrote
// meanwhile would get them in a second write.
func (r *riders) poll() {
	if r == nil || r.turns.queued.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	jobs := r.turns.adopt()
	if len(jobs) == 0 {
		return
	}
	var adopted []*adoption
	if old := r.adopted.Load(); old != nil {
		adopted = append(adopted, *old...)
	}
	for _, job := range jobs {
		adopted = append(adopted, newAdoption(job))
	}
	r.adopted.Store(&adopted)
}

// jobs returns the adopted fan-outs.
func (r *riders) jobs() []*fanOutJob {
	adopted := r.adopted.Load()
	if adopted == nil {
		return nil
	}
	jobs := make([]*fanOutJob, len(*adopted))
	for i, a := range *adopted {
		jobs[i] = a.job
	}
	return jobs
}

// along appends to frames, for connection c, the adopted frames for c not
// taken yet.
func (r *riders) along(c *conn, frames []queuedFrame) []queuedFrame {
	if r == nil {
		return frames
	}
	r.poll()
	adopted := r.adopted.Load()
	if adopted == nil {
		return frames
	}
	for _, a := range *adopted {
		if i, ok := a.first[c]; ok {
			frames = a.take(i, frames)
			for _, j := range a.more[c] {
				frames = a.take(j, frames)
			}
		}
	}
	return frames
}

// rest returns what is left of the adopted fan-outs, as fan-outs of their
// own, and takes it.
func (r *riders) rest() []*fanOutJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	adopted := r.adopted.Load()
	if adopted == nil {
		return nil
	}
	var rest []*fanOutJob
	for _, a := range *adopted {
		var members []*operation
		for i, m := range a.job.members {
			if a.taken[i].CompareAndSwap(false, true) {
				members = append(members, m)
			}
		}
		if len(members) > 0 {
			rest = append(rest, &fanOutJob{members: members, result: a.job.result, class: a.job.class, field: a.job.field})
		}
	}
	slices.SortStableFunc(rest, func(a, b *fanOutJob) int { return cmp.Compare(a.class, b.class) })
	return rest
}

// deliverWith hands result to each member's connection, with the frames
// of r's riders for it (see deliver).
func deliverWith(members []*operation, result queuedFrame, r *riders) {
	var frames []queuedFrame
	for _, m := range members {
		result.op = m
		frames = r.along(m.conn, append(frames[:0], result))
		m.conn.enqueueAll(frames)
	}
}

// connFrame is one frame of a shared turn for one member's connection.
type connFrame struct {
	conn  *conn
	frame queuedFrame
	class int // of the frame's fan-out
}

// byConn splits the frames of batch (in class order) over one part per
// processor, each connection's frames in one part, next to each other, in
// batch's order. It sorts nothing: a first pass counts each connection's
// frames (in the connection's turn scratch), a second puts each frame in
// its place: a turn of a message and its room-list entries for 8,000
// members takes 1.5 ms here, where sorting their 16,000 frames by
// connection took 10 to 12 (BenchmarkByConn), all before the first write.
func byConn(batch []*fanOutJob, scratch *turnScratch) [][]connFrame {
	mark := turnMarks.Add(1)
	total := 0
	for _, job := range batch {
		total += len(job.members)
	}
	if cap(scratch.frames) < total {
		scratch.frames = make([]connFrame, total)
		scratch.conns = make([]*conn, 0, total)
	}
	conns := scratch.conns[:0]
	for _, job := range batch {
		for _, m := range job.members {
			c := m.conn
			if c.turn.mark != mark {
				c.turn.mark, c.turn.n = mark, 0
				conns = append(conns, c)
			}
			c.turn.n++
		}
	}
	at := int32(0)
	for _, c := range conns {
		c.turn.at, at = at, at+c.turn.n
		c.turn.n = 0
	}
	scratch.conns = conns
	frames := scratch.frames[:total]
	for _, job := range batch {
		for _, m := range job.members {
			f := job.result
			f.op = m
			c := m.conn
			frames[c.turn.at+c.turn.n] = connFrame{conn: c, frame: f, class: job.class}
			c.turn.n++
		}
	}
	n := max(1, min(runtime.GOMAXPROCS(0), total/fanOutChunk))
	parts := make([][]connFrame, 0, n)
	start := 0
	for i := 1; i < n; i++ {
		end := max(start, total*i/n)
		for end > 0 && end < total && frames[end].conn == frames[end-1].conn {
			end++
		}
		parts = append(parts, frames[start:end])
		start = end
	}
	return append(parts, frames[start:])
}

// turnMarks numbers byConn's calls, for conn.turn.
var turnMarks atomic.Uint64

// turnScratch is the memory byConn orders a turn's frames in, kept from
// one turn to the next (see runPass).
type turnScratch struct {
	frames []connFrame
	conns  []*conn
}

// deliverByConn hands each connection its frames of part (see byConn) at
// once, with those of r's riders for it, without waiting for any (see
// conn.enqueueAll): first the connections with an event among their
// frames, then the others, so an event waits for no write of a latest
// value alone.
func deliverByConn(part []connFrame, r *riders) {
	var frames []queuedFrame
	for _, events := range []bool{true, false} {
		for i := 0; i < len(part); {
			c, first := part[i].conn, i
			for i < len(part) && part[i].conn == c {
				i++
			}
			if (part[first].class == eventTurn) != events {
				continue
			}
			frames = frames[:0]
			for _, f := range part[first:i] {
				frames = append(frames, f.frame)
			}
			c.enqueueAll(r.along(c, frames))
		}
	}
}

// deliver hands result (a frame for no operation yet) to each member's
// connection, without waiting for any (see conn.enqueue).
func deliver(members []*operation, result queuedFrame) {
	for _, m := range members {
		result.op = m
		m.conn.enqueue(result)
	}
}

// join adds op, which has seen every result up to pos, if the group can
// continue from there without a gap. An operation that ended meanwhile
// (its private execution was on its way here) leaves again at once, as if
// it had ended just after joining.
func (g *group) join(op *operation, pos int64) bool {
	if !g.add(op, pos) {
		return false
	}
	var scope string
	if g.spanning {
		scope = op.share.scope
	}
	op.setLeave(func() { g.leave(op, scope) }) // outside g.mu: leave takes it
	return true
}

// add makes op a member; see join.
func (g *group) add(op *operation, pos int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	switch {
	case g.latest:
		// A newer result of the group's is all the member needs; without
		// one yet, the leader's first (as new as the member's, or newer)
		// comes to it.
		if e, ok := g.newestFor(op.share.scope); ok && e.pos > pos {
			op.conn.enqueue(queuedFrame{op: op, result: e.result, latest: true})
			pos = e.pos
		}
	case g.head > pos:
		// The group is ahead: join only if its recent results cover the
		// difference, and queue those first.
		i := slices.IndexFunc(g.ring, func(e ringEntry) bool { return e.pos == pos+1 })
		if i < 0 {
			return false // too far behind: catch up privately first
		}
		missed := g.ring[i:]
		visible := func(e ringEntry) bool { return !g.spanning || e.visibleTo(op.share.scope) }
		n := 0
		for _, e := range missed {
			if visible(e) {
				n++
			}
		}
		if n > op.conn.transport.opts.MaxQueue/2 {
			return false
		}
		for _, e := range missed {
			if visible(e) {
				op.conn.enqueue(queuedFrame{op: op, result: e.result})
			}
		}
		pos = g.head
	}
	op.lastPos = pos
	g.members[op] = struct{}{}
	if g.spanning {
		scope := op.share.scope
		g.scopes[scope] = append(g.scopes[scope], op)
	}
	return true
}

// leave removes a member, of scope in a group that spans scopes; the last
// one out stops the leader.
func (g *group) leave(op *operation, scope string) {
	g.mu.Lock()
	delete(g.members, op)
	if g.spanning {
		if ops := slices.DeleteFunc(g.scopes[scope], func(m *operation) bool { return m == op }); len(ops) > 0 {
			g.scopes[scope] = ops
		} else {
			delete(g.scopes, scope)
			delete(g.newest, scope)
		}
	}
	empty := len(g.members) == 0 && !g.closed
	if empty {
		g.closed = true
	}
	g.mu.Unlock()
	if empty {
		g.cancel()
		g.transport.forgetGroup(g)
	}
}

// maxOwnSpanningKeys is how many keys of SpanningFields one scope may be
// the only user of: a client's made-up documents take few of the
// transport's MaxSpanningGroups, and cannot push everyone else's
// subscriptions off their shared groups.
const maxOwnSpanningKeys = 4

// spanUse is who uses one key of SpanningFields: operations by scope.
type spanUse map[string]int

// claimSpanning counts op, of scope, among the users of key, a share key of
// SpanningFields, until op ends. It refuses (op must run on its own) a key
// not in use when Options.MaxSpanningGroups keys are, or when scope is
// already the only user of maxOwnSpanningKeys keys; and an op that has
// ended.
func (t *Transport) claimSpanning(op *operation, key, scope string) bool {
	t.groupsMu.Lock()
	use := t.spanning[key]
	if use == nil {
		if len(t.spanning) >= t.opts.MaxSpanningGroups || t.ownSpanningKeys(scope) >= maxOwnSpanningKeys {
			t.groupsMu.Unlock()
			return false
		}
		use = spanUse{}
		t.spanning[key] = use
	}
	use[scope]++
	t.groupsMu.Unlock()
	op.stateMu.Lock()
	ended := op.ended.Load()
	if !ended {
		op.spanKey, op.spanScope = key, scope
	}
	op.stateMu.Unlock()
	if ended {
		t.releaseSpanning(key, scope)
	}
	return !ended
}

// ownSpanningKeys counts the keys scope is the only user of. Called with
// groupsMu held; at most MaxSpanningGroups keys are in use.
func (t *Transport) ownSpanningKeys(scope string) int {
	n := 0
	for _, use := range t.spanning {
		if len(use) == 1 && use[scope] > 0 {
			n++
		}
	}
	return n
}

// releaseSpanning ends one operation's use of key (see claimSpanning).
func (t *Transport) releaseSpanning(key, scope string) {
	t.groupsMu.Lock()
	defer t.groupsMu.Unlock()
	use := t.spanning[key]
	if use[scope]--; use[scope] <= 0 {
		delete(use, scope)
	}
	if len(use) == 0 {
		delete(t.spanning, key)
	}
}

// groupHead returns the running group under key and its head, or nil.
func (t *Transport) groupHead(key string) (*group, int64) {
	t.groupsMu.Lock()
	g := t.groups[key]
	t.groupsMu.Unlock()
	if g == nil {
		return nil, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, 0
	}
	return g, g.head
}

// plainSpanning reports whether the operation is a plain subscription (no
// resume cursor) to a durable field whose group spans scopes.
func (s *shareInfo) plainSpanning() bool { return s.afterVar == "" && s.spanning && !s.latest }

// isClosed reports whether the group takes no more members.
func (g *group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// end runs when the leader's stream is over: the members' operations
// complete, as a private subscription's would, or, when the leader failed
// (a panic), get an INTERNAL error.
func (g *group) end(failed bool) {
	g.mu.Lock()
	g.closed = true
	members := g.members
	g.members = nil
	g.mu.Unlock()
	g.cancel()
	g.transport.forgetGroup(g)
	for m := range members {
		m.conn.enqueue(queuedFrame{op: m, complete: !failed, failed: failed})
	}
}

// forgetGroup drops g from the running groups, unless another group has
// replaced it under its key.
func (t *Transport) forgetGroup(g *group) {
	t.groupsMu.Lock()
	if t.groups[g.key] == g {
		delete(t.groups, g.key)
	}
	delete(t.linkedGroups, g)
	t.groupsMu.Unlock()
}

// Groups reports how many shared subscriptions are running.
func (t *Transport) Groups() int {
	t.groupsMu.Lock()
	defer t.groupsMu.Unlock()
	return len(t.groups)
}

// ShareableStream reports whether the live results of a subscription (its
// operation context rc) are a durable stream that others may share: its
// root field is one of Options.PublicFields, neither a latest-value nor a
// spanning field, and its resume cursor is absent or a variable. key is
// the same for every subscription whose results are the same (whatever
// the cursor); afterVar names the cursor's variable ("" for none). Another
// transport (GraphQL over Server-Sent Events) shares delivery with it.
func (t *Transport) ShareableStream(ctx context.Context, rc *graphql.OperationContext) (key, afterVar string, ok bool) {
	share, ok := t.shareKey(ctx, rc)
	if !ok || share.latest || share.spanning || !strings.HasPrefix(share.key, "public\x00") {
		return "", "", false
	}
	return share.key, share.afterVar, true
}

// ShareableLatest reports whether the live results of a subscription are a
// latest-value stream (Options.LatestFields) that others may share: its
// root field is one of Options.PublicFields and not a spanning field. key
// is the same for every subscription whose results are the same.
func (t *Transport) ShareableLatest(ctx context.Context, rc *graphql.OperationContext) (key string, ok bool) {
	share, ok := t.shareKey(ctx, rc)
	if !ok || !share.latest || share.spanning || !strings.HasPrefix(share.key, "public\x00") {
		return "", false
	}
	return share.key, true
}

// MaxOwnSpanningKeys is how many distinct documents of spanning fields one
// scope alone may have shared at once (see claimSpanning); another
// transport that shares such fields applies the same bound.
const MaxOwnSpanningKeys = maxOwnSpanningKeys

// SpanningShare says how a subscription of a spanning field may share
// delivery between scopes (see Transport.ShareableSpanning).
type SpanningShare struct {
	Key   string // its group's: the same for every scope
	Scope string // the caller's
	// MaxGroups is Options.MaxSpanningGroups.
	MaxGroups int
	// Latest: a latest-value field (Options.LatestFields), whose results
	// carry versions instead of positions.
	Latest bool
	// Following: a field whose events follow another's
	// (Options.FollowingFields). Its positions are its stream's own count
	// (1, 2, … from the stream's start; 0 where a subscriber is caught up),
	// not a cursor to resume from: a subscriber joins a running group at
	// the group's head of the moment its own stream caught up.
	Following bool
}

// ShareableSpanning reports whether the live results of a subscription are
// those of a spanning field (Options.SpanningFields, such as every user's
// notifications or unread counts) that another transport may share
// between scopes as this one does.
func (t *Transport) ShareableSpanning(ctx context.Context, rc *graphql.OperationContext) (SpanningShare, bool) {
	share, ok := t.shareKey(ctx, rc)
	if !ok || !share.spanning {
		return SpanningShare{}, false
	}
	return SpanningShare{Key: share.key, Scope: share.scope, MaxGroups: t.opts.MaxSpanningGroups,
		Latest: share.latest, Following: !share.latest && share.turn == latestTurn}, true
}
