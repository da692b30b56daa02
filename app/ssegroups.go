package app

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"math"
	"slices"
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
//
// A latest-value field's stream (presence, kpiUpdated, dashboard,
// unreadCount) joins once it has written a value, at that value's version;
// its group keeps the newest value (by scope) instead of a ring. The
// streams of a field that spans scopes (every user's notificationAdded,
// unreadCount, roomsChanged: gqlws.Transport.ShareableSpanning) share one
// group for all users; each of its events names the scopes it is for, and
// reaches only their streams.

// sseRing is how many recent events a group keeps for members that join
// behind its head; a member's queue holds as many.
const sseRing = 256

// sseShare is how a stream may share: its group's key, whether the field
// is a latest-value or a spanning one, and for a spanning one the stream's
// scope and the bound on such groups. following marks a field whose
// positions are its stream's own count (gqlws.SpanningShare.Following):
// its events carry no id, and a stream joins its group at the group's head.
type sseShare struct {
	key       string
	latest    bool
	spanning  bool
	following bool
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
	owner     *sseGroups
	key       string
	latest    bool // a latest-value stream: positions are versions
	spanning  bool // its events have audiences: each goes to the members of its scopes, or to all
	following bool // its events carry no id (see sseShare)

	mu     sync.Mutex
	cancel context.CancelFunc // stops the leader; set once it starts
	// scopes are the members by scope (all under "" in a group that does
	// not span scopes); a scope without members has no entry.
	scopes map[string]map[*sseMember]struct{}
	ring   []*sseFrame // of a durable stream: the newest events delivered, oldest first
	scoped int         // the scopes the ring's audiences name (see gqlws.MaxRingScopes)
	// newest is, of a latest-value stream, its newest value by scope ("":
	// for all; every value of a group that does not span scopes). A scope
	// without members keeps its value while it is among the newest sseRing
	// such scopes a value was for (strays: a subscriber may be on its way
	// in), or has members again.
	newest map[string]*sseFrame
	strays *live.Recent[string]
	head   int64 // the position of the newest event, or the one the leader started after
	// evicted is the position up to which the group cannot replay: the
	// position its leader started after, then that of the newest event
	// dropped from the ring. A member whose position is at least this can
	// join.
	evicted int64
	closed  bool
}

// sseFrame is one event of a group, encoded once.
type sseFrame struct {
	pos int64
	// audiences are, of a spanning group's event, the scopes it is for
	// (nil: every scope); all is whether they name all ("") too. audienceSet
	// holds them for a member that joins and looks its scope up in many, made
	// the first time one does: most events of a group are never looked up.
	audiences   []string
	all         bool
	audienceSet func() map[string]struct{}
	text        []byte // shared by every member: never modified
	// deflated is text's deflate blocks (see sseWriter), made once, the
	// first time a member that takes gzip writes the frame.
	deflated func() []byte
}

func newSSEFrame(pos int64, audiences []string, text []byte) *sseFrame {
	f := &sseFrame{pos: pos, audiences: audiences, all: audiences == nil || slices.Contains(audiences, ""), text: text}
	f.audienceSet = sync.OnceValue(func() map[string]struct{} {
		set := make(map[string]struct{}, len(audiences))
		for _, a := range audiences {
			set[a] = struct{}{}
		}
		return set
	})
	f.deflated = sync.OnceValue(func() []byte {
		var b bytes.Buffer
		fw := sseCompressors.Get().(*flate.Writer)
		fw.Reset(&b)
		_, _ = fw.Write(text) // a bytes.Buffer does not fail
		_ = fw.Flush()
		fw.Reset(io.Discard)
		sseCompressors.Put(fw)
		return b.Bytes()
	})
	return f
}

// isFor reports whether f is for the members of scope: a broadcast's count
// or a busy room's entry names thousands, looked up in a set.
func (f *sseFrame) isFor(scope string) bool {
	if f.all {
		return true
	}
	if len(f.audiences) <= 16 {
		return slices.Contains(f.audiences, scope)
	}
	_, ok := f.audienceSet()[scope]
	return ok
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
// it catches up. at and atHead are what head said when the stream caught
// up: in that group, a stream is at its head of then at least.
func (gs *sseGroups) join(ctx context.Context, share sseShare, pos int64, at *sseGroup, atHead int64, lead leader) *sseMember {
	gs.mu.Lock()
	g := gs.groups[share.key]
	if g != nil && g.isClosed() {
		g = nil // its last member left, and it ends: this stream starts another
	}
	start := g == nil
	if start {
		if share.spanning && !gs.mayStartSpanning(share) {
			gs.mu.Unlock()
			return nil
		}
		g = &sseGroup{owner: gs, key: share.key, latest: share.latest, spanning: share.spanning, following: share.following,
			scopes: make(map[string]map[*sseMember]struct{}),
			newest: make(map[string]*sseFrame), head: pos, evicted: pos}
		if share.latest {
			g.evicted = math.MinInt64 // any version may join: it gets the newest value of its scope if newer
		}
		gs.groups[share.key] = g
	} else if g == at {
		pos = max(pos, atHead)
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
	reported := &announcements{}
	if share.latest {
		gctx = live.WithVersionRecorder(gctx, reported.push)
	} else {
		gctx = stream.WithPositionRecorder(gctx, reported.push, func(int64) {})
	}
	if share.spanning {
		gctx = stream.WithAudienceRecorder(gctx, reported.audience)
	}
	responses, rctx, err := lead(gctx, pos)
	if err != nil {
		g.end()
		return false
	}
	g.owner.panics.Go(gctx, "sse.group", func() { g.lead(rctx, responses, reported) }) // a panic ends the group (lead's deferred end)
	return true
}

// isClosed reports whether g takes no more members.
func (g *sseGroup) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// head returns the group of key that runs, and the position of its newest
// event; nil if none runs, or it is ending.
func (gs *sseGroups) head(key string) (*sseGroup, int64) {
	gs.mu.Lock()
	g := gs.groups[key]
	gs.mu.Unlock()
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
		if len(g.scopes) == 1 && len(g.scopes[share.scope]) > 0 {
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
	if g.latest {
		if f := g.newestFor(scope); f != nil && f.pos > pos {
			m.frames <- f
			m.lastPos = f.pos
		}
	}
	for _, f := range g.ring {
		if f.pos > pos && f.isFor(scope) {
			m.frames <- f // the ring is no longer than the queue
			m.lastPos = f.pos
		}
	}
	if g.scopes[scope] == nil {
		g.scopes[scope] = make(map[*sseMember]struct{})
	}
	g.scopes[scope][m] = struct{}{}
	return m
}

// newestFor returns the newest value of a latest-value group for the
// members of scope, or nil. Called with g.mu held.
func (g *sseGroup) newestFor(scope string) *sseFrame {
	own, all := g.newest[scope], g.newest[""]
	if own == nil || (all != nil && all.pos > own.pos) {
		return all
	}
	return own
}

// leave takes m out of the group; the group ends with its last member.
func (g *sseGroup) leave(m *sseMember) {
	g.mu.Lock()
	g.forget(m)
	last := len(g.scopes) == 0 && !g.closed
	if last {
		g.closed = true // a stream that joins now starts another group
	}
	g.mu.Unlock()
	if last {
		g.end()
	}
}

// forget takes m off its scope's members, if it is one still, and the
// scope's newest value with its last member unless it is a stray. Called
// with g.mu held.
func (g *sseGroup) forget(m *sseMember) {
	members, ok := g.scopes[m.scope]
	if !ok {
		return
	}
	delete(members, m)
	if len(members) == 0 {
		delete(g.scopes, m.scope)
		if m.scope != "" && (g.strays == nil || !g.strays.Has(m.scope)) {
			delete(g.newest, m.scope)
		}
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
	for _, members := range g.scopes {
		for m := range members {
			m.release()
		}
	}
	clear(g.scopes)
	cancel := g.cancel
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// lead reads the leader's results and hands each to every member, until
// the results end or one has no position (an error): then the group ends.
func (g *sseGroup) lead(ctx context.Context, responses graphql.ResponseHandler, reported *announcements) {
	defer g.end()
	for {
		g.owner.panics.Point("sse.group")
		resp := responses(ctx)
		if resp == nil || resp.Data == nil || len(resp.Errors) > 0 {
			return
		}
		ev, ok := reported.pop()
		if !ok {
			return
		}
		if g.spanning && len(ev.audiences) == 0 {
			// An event whose audience was not reported reaches nobody:
			// the group ends rather than guess.
			return
		}
		id := strconv.FormatInt(ev.pos, 10)
		if g.latest || g.following {
			id = "" // a version, or the group's own count, is no position to resume from
		}
		text, ok := sseEventText("next", id, resp)
		if !ok {
			return
		}
		g.publish(newSSEFrame(ev.pos, ev.audiences, text))
	}
}

// publish queues f for every member of its audiences that has not had it,
// lets go of the members whose queue is full, and keeps f for the members
// to come.
func (g *sseGroup) publish(f *sseFrame) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.head = f.pos
	if f.all {
		for _, members := range g.scopes {
			g.queue(f, members)
		}
	} else {
		for _, scope := range f.audiences {
			g.queue(f, g.scopes[scope])
		}
	}
	g.remember(f)
}

// queue queues f for each of members that has not had it. Called with
// g.mu held.
func (g *sseGroup) queue(f *sseFrame, members map[*sseMember]struct{}) {
	for m := range members {
		if f.pos <= m.lastPos {
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
			g.forget(m)
			m.release()
		}
	}
}

// evictOldest drops the ring's oldest event. Called with g.mu held.
func (g *sseGroup) evictOldest() {
	g.evicted = g.ring[0].pos
	g.scoped -= len(g.ring[0].audiences)
	n := copy(g.ring, g.ring[1:])
	g.ring[n] = nil
	g.ring = g.ring[:n]
}

// remember keeps f for the members to come: in the ring, or as the newest
// value of its scopes. Called with g.mu held.
func (g *sseGroup) remember(f *sseFrame) {
	if !g.latest {
		if len(g.ring) == sseRing {
			g.evictOldest()
		}
		g.ring = append(g.ring, f)
		g.scoped += len(f.audiences)
		for g.scoped > gqlws.MaxRingScopes && len(g.ring) > 1 {
			g.evictOldest()
		}
		return
	}
	if f.audiences == nil {
		g.newest[""] = f
		return
	}
	for _, scope := range f.audiences {
		g.newest[scope] = f
		if scope != "" && len(g.scopes[scope]) == 0 {
			g.keepStray(scope)
		}
	}
}

// keepStray notes that the group keeps the newest value of scope, which
// has no member: the newest sseRing such scopes are kept, older ones
// forgotten unless they have members by then. Called with g.mu held.
func (g *sseGroup) keepStray(scope string) {
	if g.strays == nil {
		g.strays = live.NewRecent[string](sseRing)
	}
	if old, ok := g.strays.Add(scope); ok && len(g.scopes[old]) == 0 {
		delete(g.newest, old)
	}
}

// announced is what a stream reported of one result: its position (or
// version) and, under an audience recorder, the scopes it is for.
type announced struct {
	pos       int64
	audiences []string
}

// announcements is what a stream reported of its results, in order, for
// the results still to be read: the audiences reported before each
// position go with it.
type announcements struct {
	mu      sync.Mutex
	pending []string
	q       []announced
}

// audience records a scope the next result is for.
func (a *announcements) audience(scope string) {
	a.mu.Lock()
	a.pending = append(a.pending, scope)
	a.mu.Unlock()
}

// push records the next result's position, with the scopes recorded since
// the last.
func (a *announcements) push(pos int64) {
	a.mu.Lock()
	a.q = append(a.q, announced{pos: pos, audiences: a.pending})
	a.pending = nil
	a.mu.Unlock()
}

func (a *announcements) pop() (ev announced, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.q) == 0 {
		return ev, false
	}
	ev, a.q = a.q[0], a.q[1:]
	return ev, true
}

func (a *announcements) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.q)
}
