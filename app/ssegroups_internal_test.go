package app

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/stream"
)

// fakeEvent is one result a fake leader hands out: its position (or
// version) and the scopes it is for.
type fakeEvent struct {
	pos       int64
	audiences []string
}

// fakeLeader is a subscription whose results are the events sent on it,
// reported to the recorders of its context as a stream reports them.
type fakeLeader chan fakeEvent

func (f fakeLeader) lead(latest bool) leader {
	return func(ctx context.Context, _ int64) (graphql.ResponseHandler, context.Context, error) {
		return func(ctx context.Context) *graphql.Response {
			select {
			case ev := <-f:
				if audience := stream.AudienceRecorder(ctx); audience != nil {
					for _, a := range ev.audiences {
						audience(a)
					}
				}
				if latest {
					live.VersionRecorder(ctx)(ev.pos)
				} else {
					sent, _ := stream.PositionRecorder(ctx)
					sent(ev.pos)
				}
				return &graphql.Response{Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, ev.pos))}
			case <-ctx.Done():
				return nil
			}
		}, ctx, nil
	}
}

// received returns the position of m's next frame, failing if none comes.
func received(t *testing.T, m *sseMember) int64 {
	t.Helper()
	select {
	case f := <-m.frames:
		return f.pos
	case <-time.After(5 * time.Second):
		t.Fatal("no frame")
		return 0
	}
}

// nothingFor fails if m has a frame waiting.
func nothingFor(t *testing.T, m *sseMember, what string) {
	t.Helper()
	select {
	case f := <-m.frames:
		t.Errorf("%s: got the frame at %d", what, f.pos)
	default:
	}
}

// settled returns once the group's publish of the last event sent to its
// leader has handed it to every member: a member may receive a frame while
// the publish still holds the group's lock, and the fake leader publishes
// nothing more until the test sends it another event.
func settled(g *sseGroup) {
	g.mu.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for publish is the point
	g.mu.Unlock()
}

func isGone(m *sseMember) bool {
	select {
	case <-m.gone:
		return true
	default:
		return false
	}
}

// TestSSEGroupLetsGoOfSlowStreams: a stream of a durable field whose
// queue is full (it reads nothing while sseRing events come) is let go,
// to resume on its own from its last id, while the others get every event;
// a stream that joins behind the group's head gets what it missed from the
// ring, and one further behind than the ring reaches is not taken.
func TestSSEGroupLetsGoOfSlowStreams(t *testing.T) {
	gs := &sseGroups{groups: make(map[string]*sseGroup)}
	events := make(fakeLeader)
	share := sseShare{key: "statuses"}
	reader := gs.join(t.Context(), share, 0, nil, 0, events.lead(false))
	require.NotNil(t, reader)
	idle := gs.join(t.Context(), share, 0, nil, 0, events.lead(false))
	require.NotNil(t, idle)
	for pos := int64(1); pos <= sseRing+1; pos++ {
		events <- fakeEvent{pos: pos}
		require.Equal(t, pos, received(t, reader), "the stream that reads gets every event")
		settled(reader.group)
		if pos == sseRing {
			assert.False(t, isGone(idle), "a full queue is no reason yet")
		}
	}
	assert.True(t, isGone(idle), "let go once its queue overflowed")

	behind := gs.join(t.Context(), share, sseRing-10, nil, 0, events.lead(false))
	require.NotNil(t, behind, "the ring still holds what it missed")
	for pos := int64(sseRing - 9); pos <= sseRing+1; pos++ {
		require.Equal(t, pos, received(t, behind))
	}
	nothingFor(t, behind, "caught up")
	assert.Nil(t, gs.join(t.Context(), share, 0, nil, 0, events.lead(false)), "further behind than the ring: stays on its own")
}

// TestSSELatestGroupNeverLetsGo: a stream of a latest-value field that
// reads nothing is never let go; it has the newest value waiting, never a
// stale one.
func TestSSELatestGroupNeverLetsGo(t *testing.T) {
	gs := &sseGroups{groups: make(map[string]*sseGroup)}
	events := make(fakeLeader)
	share := sseShare{key: "kpis", latest: true}
	reader := gs.join(t.Context(), share, 0, nil, 0, events.lead(true))
	idle := gs.join(t.Context(), share, 0, nil, 0, events.lead(true))
	require.NotNil(t, reader)
	require.NotNil(t, idle)
	for v := int64(1); v <= 3*sseRing; v++ {
		events <- fakeEvent{pos: v}
		require.Equal(t, v, received(t, reader))
	}
	settled(reader.group)
	assert.False(t, isGone(idle))
	assert.EqualValues(t, 3*sseRing, received(t, idle), "the newest value")
	nothingFor(t, idle, "one value waits, no more")
	late := gs.join(t.Context(), share, 5, nil, 0, events.lead(true))
	require.NotNil(t, late, "any version may join")
	assert.EqualValues(t, 3*sseRing, received(t, late), "a stream that joins with an older value gets the newest")
}

// TestSSESpanningGroupAudiences: in a group that spans scopes, an event
// reaches the streams of the scopes it is for (one or many, "" for all),
// and no other; a latest value for a scope with no stream yet is kept for
// the stream on its way in.
func TestSSESpanningGroupAudiences(t *testing.T) {
	gs := &sseGroups{groups: make(map[string]*sseGroup)}
	events := make(fakeLeader)
	share := func(scope string) sseShare {
		return sseShare{key: "unread", latest: true, spanning: true, scope: scope, maxGroups: 64}
	}
	members := map[string]*sseMember{}
	for _, scope := range []string{"a", "b", "c"} {
		members[scope] = gs.join(t.Context(), share(scope), 0, nil, 0, events.lead(true))
		require.NotNil(t, members[scope])
	}
	expect := func(v int64, scopes ...string) {
		t.Helper()
		for _, s := range scopes {
			assert.Equal(t, v, received(t, members[s]), "scope %s", s)
		}
		settled(members["a"].group)
	}
	events <- fakeEvent{pos: 1, audiences: []string{"a", "b"}}
	expect(1, "a", "b")
	many := []string{"c"}
	for i := range 40 { // the frame looks scopes up in a set
		many = append(many, fmt.Sprintf("nobody%d", i))
	}
	events <- fakeEvent{pos: 2, audiences: many}
	expect(2, "c")
	events <- fakeEvent{pos: 3, audiences: []string{""}}
	expect(3, "a", "b", "c")
	for s, m := range members {
		nothingFor(t, m, "scope "+s)
	}

	// d has no stream when its value comes; its stream, whose own
	// execution read an older one, gets it when it joins.
	events <- fakeEvent{pos: 4, audiences: []string{"d"}}
	events <- fakeEvent{pos: 5, audiences: []string{"a"}}
	expect(5, "a")
	d := gs.join(t.Context(), share("d"), 1, nil, 0, events.lead(true))
	require.NotNil(t, d)
	assert.EqualValues(t, 4, received(t, d), "its scope's newest value")
	events <- fakeEvent{pos: 6, audiences: []string{"b", "d"}}
	assert.EqualValues(t, 6, received(t, d))
	expect(6, "b")
	nothingFor(t, members["c"], "scope c")

	// Values for scopes that never get a stream are kept for a while, not
	// for ever.
	for i := range 2 * sseRing {
		events <- fakeEvent{pos: int64(7 + i), audiences: []string{fmt.Sprintf("gone%d", i), "a"}}
		assert.EqualValues(t, 7+i, received(t, members["a"]))
	}
	settled(members["a"].group)
	g := d.group
	g.mu.Lock()
	kept := len(g.newest)
	g.mu.Unlock()
	assert.LessOrEqual(t, kept, sseRing+5, "values kept: the newest %d strays, the four streams' scopes and the one for all", sseRing)
}

// TestSSEJoinStartsAnewAfterAGroupEnds: a stream that joins while the
// group of its key is ending (its last member has left, and it is not
// yet out of the groups' map) starts another group instead of being
// refused: a refused roomsChanged stream would run on its own for the
// rest of its life.
func TestSSEJoinStartsAnewAfterAGroupEnds(t *testing.T) {
	gs := &sseGroups{groups: make(map[string]*sseGroup)}
	events := make(fakeLeader)
	share := sseShare{key: "rooms", spanning: true, following: true, scope: "a", maxGroups: 64}
	first := gs.join(t.Context(), share, 0, nil, 0, events.lead(false))
	require.NotNil(t, first)
	old := first.group
	old.mu.Lock()
	old.closed = true // as leave leaves it, a moment before end takes it out of the map
	old.mu.Unlock()
	at, _ := gs.head(share.key)
	assert.Nil(t, at, "an ending group has no head to join at")
	newer := make(fakeLeader) // the old group's leader still reads events
	second := gs.join(t.Context(), share, 0, at, 0, newer.lead(false))
	require.NotNil(t, second, "a new group takes the stream")
	assert.NotSame(t, old, second.group)
	newer <- fakeEvent{pos: 1, audiences: []string{"a"}}
	assert.EqualValues(t, 1, received(t, second))
	old.end() // the old group's end leaves the new one in place
	assert.Equal(t, 1, gs.Len())
}

// TestSSERingOfWideAudiencesIsBounded: a spanning group of a durable
// stream keeps the events whose audiences name at most gqlws.MaxRingScopes
// scopes (a busy room's room-list entries name every member): a stream
// just behind the head joins from the ring, one behind what it keeps
// stays on its own.
func TestSSERingOfWideAudiencesIsBounded(t *testing.T) {
	gs := &sseGroups{groups: make(map[string]*sseGroup)}
	events := make(fakeLeader)
	share := func(scope string) sseShare {
		return sseShare{key: "rooms", spanning: true, scope: scope, maxGroups: 64}
	}
	const audience = 8000
	everyone := make([]string, audience)
	for i := range everyone {
		everyone[i] = fmt.Sprint(i)
	}
	member := gs.join(t.Context(), share("1"), 0, nil, 0, events.lead(false))
	require.NotNil(t, member)
	for pos := int64(1); pos <= 40; pos++ {
		events <- fakeEvent{pos: pos, audiences: everyone}
		require.Equal(t, pos, received(t, member))
	}
	settled(member.group)
	g := member.group
	g.mu.Lock()
	kept, scoped := len(g.ring), g.scoped
	g.mu.Unlock()
	assert.Equal(t, gqlws.MaxRingScopes/audience, kept, "as many events as the bound holds")
	assert.Equal(t, kept*audience, scoped)
	assert.NotNil(t, gs.join(t.Context(), share("2"), 38, nil, 0, events.lead(false)), "two behind the head: from the ring")
	assert.Nil(t, gs.join(t.Context(), share("3"), 40-int64(kept)-1, nil, 0, events.lead(false)), "behind what the ring keeps")
}
