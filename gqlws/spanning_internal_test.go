package gqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capturedConn is a graphql-transport-ws connection of tr over a loopback
// socket whose peer keeps every byte it reads; read returns them once the
// socket has been quiet for a moment.
func capturedConn(t *testing.T, tr *Transport) (c *conn, read func() string) {
	t.Helper()
	server, client := loopbackPair(t)
	var mu sync.Mutex
	var got bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := client.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = server.Close()
		_ = client.Close()
		<-done
	})
	read = func() string {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
	return benchConnOver(tr, newFrameConn(server), TransportWS), read
}

// TestSpanningGroupHandsEachEventToItsScope: in a group that spans scopes, an
// event for everyone reaches every member, an event for one scope only that
// scope's members, and an event whose scope the stream did not report ends
// the group with an error rather than reach anyone.
func TestSpanningGroupHandsEachEventToItsScope(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	g, ctx := tr.newGroup(context.Background(), &shareInfo{key: "k"})
	g.spanning, g.scopes = true, make(map[string][]*operation)
	close(g.started)
	member := func(scope string) (*operation, func() string) {
		c, read := capturedConn(t, tr)
		op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1"), share: &shareInfo{scope: scope}}
		require.True(t, g.add(op, 0))
		return op, read
	}
	_, readAnn := member("ann")
	_, readBob := member("bob")

	type event struct {
		scope    string
		reported bool
	}
	events := []event{{"", true}, {"ann", true}, {"bob", true}, {"", true}, {"ann", false}}
	i := 0
	responses := func(context.Context) *graphql.Response {
		if i == len(events) {
			return nil
		}
		ev := events[i]
		i++
		if ev.reported {
			g.pos.audience(ev.scope)
		}
		g.pos.push(int64(i))
		return &graphql.Response{Data: json.RawMessage(`{"n":"e` + string(rune('0'+i)) + `"}`)}
	}
	g.run(ctx, func() (graphql.ResponseHandler, context.Context) { return responses, ctx })

	ann, bob := readAnn(), readBob()
	for _, e := range []string{`"e1"`, `"e2"`, `"e4"`} {
		assert.Contains(t, ann, e)
	}
	for _, e := range []string{`"e1"`, `"e3"`, `"e4"`} {
		assert.Contains(t, bob, e)
	}
	assert.NotContains(t, ann, `"e3"`, "bob's event never reaches ann")
	assert.NotContains(t, bob, `"e2"`, "ann's event never reaches bob")
	for name, got := range map[string]string{"ann": ann, "bob": bob} {
		assert.NotContains(t, got, `"e5"`, "an event of no reported scope reaches nobody (%s)", name)
		assert.Contains(t, got, `"type":"error"`, "%s hears that the group failed", name)
	}
	assert.True(t, g.isClosed())
}

// TestLargeFanOutsTakeTurns: a fan-out large enough to use every processor
// waits while another runs, and goes as soon as it ends; a small one never
// waits.
func TestLargeFanOutsTakeTurns(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	closed := &conn{transport: tr}
	closed.closed.Store(true) // takes frames and drops them at once
	members := func(n int) []*operation {
		ops := make([]*operation, n)
		for i := range ops {
			ops[i] = &operation{conn: closed}
		}
		return ops
	}
	ctx := context.Background()
	release := holdTurn(t, &tr.fanOuts) // another large fan-out runs
	done := make(chan bool, 1)
	go func() {
		done <- tr.fanOut(ctx, &fanOutJob{members: members(2 * fanOutChunk), result: queuedFrame{}, class: eventTurn})
	}()
	assert.True(t, tr.fanOut(ctx, &fanOutJob{members: members(fanOutChunk), result: queuedFrame{}, class: eventTurn}), "a small fan-out goes at once")
	select {
	case <-done:
		t.Fatal("a large fan-out ran beside another")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case ok := <-done:
		assert.True(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting fan-out did not run once the other ended")
	}
}

// leadEvents starts g's leader over events, each a result for the scopes
// named, at positions 1, 2, …, and returns once every one is handed out;
// the leader then waits for more until the test ends.
func leadEvents(t *testing.T, ctx context.Context, g *group, events ...[]string) {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	i := 0
	responses := func(ctx context.Context) *graphql.Response {
		if i == len(events) {
			<-ctx.Done()
			return nil
		}
		for _, scope := range events[i] {
			g.pos.audience(scope)
		}
		i++
		g.pos.push(int64(i))
		return &graphql.Response{Data: json.RawMessage(`{"n":"e` + strconv.Itoa(i) + `"}`)}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(ctx, func() (graphql.ResponseHandler, context.Context) { return responses, ctx })
	}()
	t.Cleanup(func() { stop(); <-done })
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.head == int64(len(events))
	}, 5*time.Second, time.Millisecond)
}

// newSpanningGroup returns a started group of tr that spans scopes.
func newSpanningGroup(tr *Transport, latest bool) (*group, context.Context) {
	g, ctx := tr.newGroup(context.Background(), &shareInfo{key: "k"})
	g.spanning, g.latest = true, latest
	g.scopes, g.newest = make(map[string][]*operation), make(map[string]ringEntry)
	close(g.started)
	return g, ctx
}

// TestSpanningLatestKeepsEachScopesNewest: in a latest-value group that
// spans scopes, a scope's new value that comes while its subscriber is on
// its way in (no member of that scope yet) is what the subscriber gets
// when it joins, and another scope's is not.
func TestSpanningLatestKeepsEachScopesNewest(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	g, ctx := newSpanningGroup(tr, true)
	leadEvents(t, ctx, g, []string{"ann"}, []string{"bob"})
	c, read := capturedConn(t, tr)
	op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1"), share: &shareInfo{scope: "ann"}}
	require.True(t, g.add(op, 0), "ann's own first value was at version 0")
	got := read()
	assert.Contains(t, got, `"e1"`, "ann's newer value")
	assert.NotContains(t, got, `"e2"`, "bob's value is not ann's")
}

// TestPlainSpanningMemberGetsWhatCameSinceItsHead: a plain subscriber of a
// spanning field joins at the group's head of the moment its own stream
// caught up; what the group handed out since, for its scope or for all, is
// replayed to it on joining.
func TestPlainSpanningMemberGetsWhatCameSinceItsHead(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	g, ctx := newSpanningGroup(tr, false)
	leadEvents(t, ctx, g, []string{"ann"}, []string{""}, []string{"bob"})
	c, read := capturedConn(t, tr)
	op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1"), share: &shareInfo{scope: "ann", spanning: true}}
	require.True(t, g.add(op, 0), "caught up when the group's head was 0")
	got := read()
	assert.Contains(t, got, `"e1"`)
	assert.Contains(t, got, `"e2"`)
	assert.NotContains(t, got, `"e3"`, "bob's")
}

// TestSpanningGroupsAreBounded: at most MaxSpanningGroups documents of the
// spanning fields share groups at once, and one caller may be the only user
// of at most four; one more is refused (its subscription runs on its own)
// until one of those is no longer in use, and a document in use takes any
// number of subscribers, of any caller.
func TestSpanningGroupsAreBounded(t *testing.T) {
	tr := New(Options{MaxSpanningGroups: 6})
	t.Cleanup(tr.Shutdown)
	newOp := func() *operation { return &operation{conn: &conn{transport: tr}} }
	var mallory []*operation
	for i := range maxOwnSpanningKeys {
		op := newOp()
		require.True(t, tr.claimSpanning(op, fmt.Sprint("made up ", i), "mallory"))
		mallory = append(mallory, op)
	}
	assert.False(t, tr.claimSpanning(newOp(), "made up 4", "mallory"), "a fifth key of her own")
	ann := newOp()
	require.True(t, tr.claimSpanning(ann, "made up 0", "ann"), "a key in use takes another caller")
	require.True(t, tr.claimSpanning(newOp(), "made up 4", "mallory"), "made up 0 is no longer hers alone")
	a1, a2 := newOp(), newOp()
	require.True(t, tr.claimSpanning(a1, "inbox", "ann"))
	assert.False(t, tr.claimSpanning(newOp(), "other", "bob"), "six keys in use")
	require.True(t, tr.claimSpanning(a2, "inbox", "bob"), "a key in use takes any number")
	a1.end()
	assert.False(t, tr.claimSpanning(newOp(), "other", "bob"), "inbox is still in use by bob")
	a2.end()
	assert.True(t, tr.claimSpanning(newOp(), "other", "bob"), "inbox is no longer in use")
	ended := newOp()
	ended.end()
	mallory[1].end()
	assert.False(t, tr.claimSpanning(ended, "late", "carol"), "an operation that ended claims nothing")
	assert.True(t, tr.claimSpanning(newOp(), "late", "carol"), "and holds no place")
}

// TestSpanningLatestForgetsWhatNobodyNeeds: a scope's newest value goes
// when its last member leaves, and the values kept for scopes without a
// member are bounded (the last ringSize of them), while a member's value
// is kept however many others come.
func TestSpanningLatestForgetsWhatNobodyNeeds(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	g, ctx := newSpanningGroup(tr, true)
	c, _ := capturedConn(t, tr)
	ann := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1"), share: &shareInfo{scope: "ann"}}
	require.True(t, g.join(ann, 0))
	events := [][]string{{"ann"}}
	for i := range 3 * ringSize {
		events = append(events, []string{fmt.Sprint("stray ", i)})
	}
	leadEvents(t, ctx, g, events...)
	g.mu.Lock()
	kept := len(g.newest)
	_, annKept := g.newest["ann"]
	g.mu.Unlock()
	assert.True(t, annKept, "a member's newest value stays")
	assert.LessOrEqual(t, kept, ringSize+1, "the strays' values are bounded")
	ann.end() // leaves the group
	g.mu.Lock()
	_, annKept = g.newest["ann"]
	g.mu.Unlock()
	assert.False(t, annKept, "gone with its last member")
}

// TestRingOfWideAudiencesIsBounded: a group that spans scopes keeps the
// audiences of its recent results within MaxRingScopes names (a busy
// room's room-list entries each name every member), forgetting the oldest
// results; a member just behind the head still joins from the ring, one
// behind what it keeps catches up privately first.
func TestRingOfWideAudiencesIsBounded(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	g, _ := tr.newGroup(context.Background(), &shareInfo{key: "k"})
	g.spanning, g.scopes = true, make(map[string][]*operation)
	const members = 8000
	everyone := make([]string, members)
	for i := range everyone {
		everyone[i] = strconv.Itoa(i)
	}
	result := newSharedResult([]byte(`{"data":{}}`), false)
	g.mu.Lock()
	for pos := int64(1); pos <= 40; pos++ {
		g.remember(ringEntry{pos: pos, scopes: everyone, result: result})
		g.head = pos
	}
	kept, scoped := len(g.ring), g.scoped
	g.mu.Unlock()
	assert.Equal(t, MaxRingScopes/members, kept, "as many results as the bound holds")
	assert.Equal(t, kept*members, scoped)

	c, _ := capturedConn(t, tr)
	join := func(pos int64) bool {
		return g.add(&operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1"), share: &shareInfo{scope: "7"}}, pos)
	}
	assert.True(t, join(38), "two behind the head: from the ring")
	assert.False(t, join(40-int64(kept)-1), "behind what the ring keeps")
}

// BenchmarkSpanningAudience is the cost, before its fan-out, of finding
// the members of an event for 8,000 users (a busy room's room-list entry)
// in a group that spans their scopes, one member each.
func BenchmarkSpanningAudience(b *testing.B) {
	tr := New(Options{})
	b.Cleanup(tr.Shutdown)
	g, _ := tr.newGroup(context.Background(), &shareInfo{key: "k"})
	g.spanning, g.scopes = true, make(map[string][]*operation)
	scopes := make([]string, 8000)
	for i := range scopes {
		scopes[i] = strconv.Itoa(i + 1)
		op := &operation{share: &shareInfo{scope: scopes[i]}}
		g.members[op] = struct{}{}
		g.scopes[scopes[i]] = append(g.scopes[scopes[i]], op)
	}
	var batch []*operation
	b.ReportAllocs()
	for b.Loop() {
		batch = batch[:0]
		for m := range g.audience(scopes) {
			batch = append(batch, m)
		}
	}
	if len(batch) != len(scopes) {
		b.Fatalf("%d members, want %d", len(batch), len(scopes))
	}
}
