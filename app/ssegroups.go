package app

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"math"
	"strconv"
	"sync"

	"github.com/99designs/gqlgen/graphql"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/stream"
)

// Shared delivery for event streams. A subscription over Server-Sent
// Events to a durable stream that WebSockets may share (statusPosted,
// messageAdded: gqlws.Transport.ShareableStream) first runs on its own, so
// that its own resolver checks that the caller may see the stream, and
// replays what its cursor asks for. Once it has caught up, it joins the
// group of its document: one leader executes the document and encodes
// (and gzips) each event once for every member. A member hands over at the
// position it has written, and the group gives it every event after that
// one: from its ring of recent events, then live. So nothing is missed or
// repeated, whenever it joins.

// sseRing is how many recent events a group keeps for members that join
// behind its head; a member's queue holds as many.
const sseRing = 256

// sseShare is how a stream may share: its group's key, whether the field
// is a latest-value or a spanning one, and for a spanning one the stream's
// scope and the bound on such groups.
type sseShare struct {
	key       string
	latest    bool
	spanning  bool
	scope     string
	maxGroups int
}

// sseGroups are the groups of one transport, by key.
type sseGroups struct {
	panics *panics.Guard // the leaders' goroutines recover through it
	mu     sync.Mutex
	groups map[string]*sseGroup
}

// sseGroup is one leader's execution of a document and its members.
type sseGroup struct {
	owner    *sseGroups
	key      string
	latest   bool // a latest-value stream: positions are versions, the ring its newest value
	spanning bool // its events have audiences: each goes to the members of its scope, or to all

	mu      sync.Mutex
	cancel  context.CancelFunc // stops the leader; set once it starts
	members map[*sseMember]struct{}
	scopes  map[string]int // members by scope, of a spanning group
	ring    []*sseFrame    // the newest events delivered, oldest first
	// evicted is the position up to which the group cannot replay: the
	// position its leader started after, then that of the newest event
	// dropped from the ring. A member whose position is at least this can
	// join.
	evicted int64
	closed  bool
}

// sseFrame is one event of a group, encoded once.
type sseFrame struct {
	pos      int64
	audience string // of a spanning group's event: the scope it is for, "" for all
	text     []byte // shared by every member: never modified
	// deflated is text's deflate blocks (see sseWriter), made once, the
	// first time a member that takes gzip writes the frame.
	deflated func() []byte
}

func newSSEFrame(pos int64, text []byte) *sseFrame {
	return &sseFrame{pos: pos, text: text, deflated: sync.OnceValue(func() []byte {
		var b bytes.Buffer
		fw := sseCompressors.Get().(*flate.Writer)
		fw.Reset(&b)
		_, _ = fw.Write(text) // a bytes.Buffer does not fail
		_ = fw.Flush()
		fw.Reset(io.Discard)
		sseCompressors.Put(fw)
		return b.Bytes()
	})}
}

// sseMember is one event stream in a group.
type sseMember struct {
	group  *sseGroup
	scope  string         // its caller's, in a spanning group
	frames chan *sseFrame // of a latest-value group: the newest value not yet written
	// gone is closed when the group lets the member go: its queue was full
	// (it reads too slowly) or the group ended. Its client reconnects and
	// resumes from the last id it received.
	gone     chan struct{}
	goneOnce sync.Once
	lastPos  int64 // the position of the newest frame queued for it; guarded by the group's mu
}

func (m *sseMember) release() { m.goneOnce.Do(func() { close(m.gone) }) }

// leader starts a group's execution with ctx, from after position start;
// it returns the results and the context to read them with.
type leader func(ctx context.Context, start int64) (graphql.ResponseHandler, context.Context, error)

// join puts a stream that has written everything up to position pos (of a
// latest-value stream: the value of version pos) into the group of key,
// starting the group (its leader from after pos) if there is none. It
// returns nil when the group cannot take it (it no longer holds the events
// after pos): the stream goes on on its own and tries again the next time
// it catches up.
func (gs *sseGroups) join(ctx context.Context, share sseShare, pos int64, lead leader) *sseMember {
	gs.mu.Lock()
	g := gs.groups[share.key]
	start := g == nil
	if start {
		if share.spanning && !gs.mayStartSpanning(share) {
			gs.mu.Unlock()
			return nil
		}
		g = &sseGroup{owner: gs, key: share.key, latest: share.latest, spanning: share.spanning,
			members: make(map[*sseMember]struct{}), scopes: make(map[string]int), evicted: pos}
		if share.latest && !share.spanning {
			g.evicted = math.MinInt64 // any version may join: the newest value is the whole state
		}
		gs.groups[share.key] = g
	}
	gs.mu.Unlock()
	// Its first member joins before the leader starts (a leader's results
	// wait in the ring for the members that join after them).
	m := g.add(pos, share.scope)
	if start && !g.start(ctx, share, pos, lead) {
		return nil // m was let go with the group
	}
	return m
}

// start starts g's leader from after position pos, outside the groups'
// lock: starting it runs the subscription's resolver, which may read the
// database. It reports false, having ended g, if it could not start.
func (g *sseGroup) start(ctx context.Context, share sseShare, pos int64, lead leader) bool {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.mu.Lock()
	g.cancel = cancel
	g.mu.Unlock()
	var positions positionQueue
	var audiences audienceQueue
	if share.latest {
		gctx = live.WithVersionRecorder(gctx, positions.push)
	} else {
		gctx = stream.WithPositionRecorder(gctx, positions.push, func(int64) {})
	}
	if share.spanning {
		gctx = stream.WithAudienceRecorder(gctx, audiences.push)
	}
	responses, rctx, err := lead(gctx, pos)
	if err != nil {
		g.end()
		return false
	}
	g.owner.panics.Go(gctx, "sse.group", func() { g.lead(rctx, responses, &positions, &audiences) }) // a panic ends the group (lead's deferred end)
	return true
}

// mayStartSpanning reports whether a spanning group may start for a stream
// of share: while there are fewer than share.maxGroups, and fewer than
// gqlws.MaxOwnSpanningKeys serve no scope but the stream's, since each
// leader reads every user's events. Called with gs.mu held.
func (gs *sseGroups) mayStartSpanning(share sseShare) bool {
	n, own := 0, 0
	for _, g := range gs.groups {
		if !g.spanning {
			continue
		}
		n++
		g.mu.Lock()
		if len(g.scopes) == 1 && g.scopes[share.scope] > 0 {
			own++
		}
		g.mu.Unlock()
	}
	return n < share.maxGroups && own < gqlws.MaxOwnSpanningKeys
}

// Len is the number of groups.
func (gs *sseGroups) Len() int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return len(gs.groups)
}

// add makes a member of a stream of scope at position pos, with the
// frames after pos (for its scope) that the ring holds queued, or returns
// nil.
func (g *sseGroup) add(pos int64, scope string) *sseMember {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || pos < g.evicted {
		return nil
	}
	queue := sseRing
	if g.latest {
		queue = 1
	}
	m := &sseMember{group: g, scope: scope, frames: make(chan *sseFrame, queue), gone: make(chan struct{}), lastPos: pos}
	for _, f := range g.ring {
		if f.pos > pos && m.wants(f) {
			m.frames <- f // the ring is no longer than the queue
			m.lastPos = f.pos
		}
	}
	g.members[m] = struct{}{}
	g.scopes[scope]++
	return m
}

// wants reports whether f is for m: in a spanning group, an event for its
// scope or for everyone.
func (m *sseMember) wants(f *sseFrame) bool {
	return f.audience == "" || f.audience == m.scope
}

// leave takes m out of the group; the group ends with its last member.
func (g *sseGroup) leave(m *sseMember) {
	g.mu.Lock()
	if _, ok := g.members[m]; ok {
		delete(g.members, m)
		g.forget(m)
	}
	last := len(g.members) == 0 && !g.closed
	if last {
		g.closed = true // a stream that joins now starts another group
	}
	g.mu.Unlock()
	if last {
		g.end()
	}
}

// forget takes m's scope off the count. Called with g.mu held.
func (g *sseGroup) forget(m *sseMember) {
	if g.scopes[m.scope]--; g.scopes[m.scope] <= 0 {
		delete(g.scopes, m.scope)
	}
}

// end stops the leader and lets every member go. A group that ends with
// members (its leader failed) sends them back to their clients, which
// resume where they were.
func (g *sseGroup) end() {
	g.owner.mu.Lock()
	if g.owner.groups[g.key] == g {
		delete(g.owner.groups, g.key)
	}
	g.owner.mu.Unlock()
	g.mu.Lock()
	g.closed = true
	for m := range g.members {
		m.release()
	}
	clear(g.members)
	clear(g.scopes)
	cancel := g.cancel
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// lead reads the leader's results and hands each to every member, until
// the results end or one has no position (an error): then the group ends.
func (g *sseGroup) lead(ctx context.Context, responses graphql.ResponseHandler, fifo *positionQueue, audiences *audienceQueue) {
	defer g.end()
	for {
		g.owner.panics.Point("sse.group")
		resp := responses(ctx)
		if resp == nil || resp.Data == nil || len(resp.Errors) > 0 {
			return
		}
		pos, ok := fifo.pop()
		if !ok {
			return
		}
		audience := ""
		if g.spanning {
			// An event whose audience was not reported reaches nobody:
			// the group ends rather than guess.
			if audience, ok = audiences.pop(); !ok {
				return
			}
		}
		id := strconv.FormatInt(pos, 10)
		if g.latest {
			id = "" // a version is no position to resume from
		}
		text, ok := sseEventText("next", id, resp)
		if !ok {
			return
		}
		f := newSSEFrame(pos, text)
		f.audience = audience
		g.publish(f)
	}
}

// publish queues f for every member that has not had it, lets go of the
// members whose queue is full, and keeps f in the ring.
func (g *sseGroup) publish(f *sseFrame) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for m := range g.members {
		if f.pos <= m.lastPos || !m.wants(f) {
			continue
		}
		select {
		case m.frames <- f:
			m.lastPos = f.pos
		default:
			if g.latest { // replace the value still waiting
				select {
				case <-m.frames:
				default:
				}
				m.frames <- f // only publish sends: the slot is free
				m.lastPos = f.pos
				continue
			}
			delete(g.members, m)
			g.forget(m)
			m.release()
		}
	}
	if g.latest {
		g.ring = append(g.ring[:0], f)
		return
	}
	if len(g.ring) == sseRing {
		g.evicted = g.ring[0].pos
		g.ring = append(g.ring[:0], g.ring[1:]...)
	}
	g.ring = append(g.ring, f)
}

// fifo is what a stream reported of its results (positions, versions,
// audiences), in order, for the results still to be read.
type fifo[T any] struct {
	mu sync.Mutex
	q  []T
}

func (f *fifo[T]) push(v T) {
	f.mu.Lock()
	f.q = append(f.q, v)
	f.mu.Unlock()
}

func (f *fifo[T]) pop() (v T, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.q) == 0 {
		return v, false
	}
	v, f.q = f.q[0], f.q[1:]
	return v, true
}

func (f *fifo[T]) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.q)
}

// positionQueue holds positions (or versions); audienceQueue audiences.
type (
	positionQueue = fifo[int64]
	audienceQueue = fifo[string]
)
