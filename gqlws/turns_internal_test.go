package gqlws

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdTurn takes tr's turn until the returned function is called.
func holdTurn(t *testing.T, tr *turns) (release func()) {
	t.Helper()
	running, hold, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tr.take(context.Background(), &fanOutJob{}, func([]*fanOutJob) (bool, []*fanOutJob) { close(running); <-hold; return true, nil })
	}()
	<-running
	return func() { close(hold); <-done }
}

// waitingFor waits until n fan-outs wait for tr's next turn.
func waitingFor(t *testing.T, tr *turns, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.waiting) == n
	}, 5*time.Second, time.Millisecond)
}

// TestTurnsShareTheNextTurn: the fan-outs that wait while a turn runs all
// go in the next one, together, events before latest values and each
// class in the order it asked; they all hear how it went. A waiter whose
// context ends leaves the queue and is run by nobody.
func TestTurnsShareTheNextTurn(t *testing.T) {
	var tr turns
	release := holdTurn(t, &tr)
	names := map[*fanOutJob]string{}
	var mu sync.Mutex
	var ran [][]string
	run := func(batch []*fanOutJob) (bool, []*fanOutJob) {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, j := range batch {
			got = append(got, names[j])
		}
		ran = append(ran, got)
		return false, nil // a part of the members missed it: every job hears so
	}
	results := make(chan string, 4)
	wait := func(ctx context.Context, name string, class int) {
		job := &fanOutJob{class: class}
		names[job] = name
		go func() {
			if tr.take(ctx, job, run) {
				results <- name + " ok"
				return
			}
			results <- name + " failed"
		}()
	}
	ctx := context.Background()
	wait(ctx, "count", latestTurn)
	waitingFor(t, &tr, 1)
	wait(ctx, "message 1", eventTurn)
	waitingFor(t, &tr, 2)
	gone, leave := context.WithCancel(ctx)
	wait(gone, "gone", eventTurn)
	waitingFor(t, &tr, 3)
	wait(ctx, "message 2", eventTurn)
	waitingFor(t, &tr, 4)
	leave()
	assert.Equal(t, "gone ok", <-results, "a fan-out nobody waits for any more counts as done")
	waitingFor(t, &tr, 3)
	release()
	var got []string
	for range 3 {
		select {
		case r := <-results:
			got = append(got, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("stuck after %v", got)
		}
	}
	assert.ElementsMatch(t, []string{"count failed", "message 1 failed", "message 2 failed"}, got)
	assert.Equal(t, [][]string{{"message 1", "message 2", "count"}}, ran, "one shared turn, events first")

	alone := &fanOutJob{}
	names[alone] = "alone"
	assert.False(t, tr.take(ctx, alone, run), "free again: it runs at once, and reports its own turn")
	assert.Equal(t, []string{"alone"}, ran[1])
}

// writeSyscalls is how many write system calls this process has made
// (Linux's /proc/self/io), or false where that cannot be read.
func writeSyscalls() (int64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// subscribersOfBoth opens n loopback connections of tr, each with a
// subscriber of the counts (a latest value) and all but every third one
// with a subscriber of the events too; each client reports what it read
// once it has all its frames.
func subscribersOfBoth(t *testing.T, tr *Transport, n int) (events, counts []*operation, received <-chan string) {
	return subscribersOf(t, tr, n, func(i int) bool { return i%3 != 0 }, func(int) bool { return true })
}

// subscribersOf opens n loopback connections of tr, the i-th with a
// subscriber of the events if event(i) and of the counts if count(i); each
// client reports what it read once it has all its frames.
func subscribersOf(t *testing.T, tr *Transport, n int, event, count func(i int) bool) (events, counts []*operation, received <-chan string) {
	got := make(chan string, n)
	for i := range n {
		server, client := loopbackPair(t)
		t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
		c := benchConnOver(tr, newFrameConn(server), TransportWS)
		frames := 0
		if event(i) {
			events = append(events, &operation{conn: c, id: "e", idJSON: appendJSONString(nil, "e")})
			frames++
		}
		if count(i) {
			counts = append(counts, &operation{conn: c, id: "c", idJSON: appendJSONString(nil, "c")})
			frames++
		}
		go func() {
			var read []byte
			buf := make([]byte, 4096)
			for strings.Count(string(read), `"payload"`) < frames {
				_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
				k, err := client.Read(buf)
				if err != nil {
					got <- fmt.Sprintf("connection %d: %v after %q", i, err, read)
					return
				}
				read = append(read, buf[:k]...)
			}
			got <- string(read)
		}()
	}
	return events, counts, got
}

var (
	eventFrame = queuedFrame{result: newSharedResult([]byte(`{"data":{"notificationAdded":{"id":"9"}}}`), false)}
	countFrame = queuedFrame{result: newSharedResult([]byte(`{"data":{"unreadCount":7}}`), false), latest: true}
)

// bothFixture is a transport on two processors (so that fan-outs of
// subscribersOfBoth's n connections are large), and those subscribers;
// it skips where write system calls cannot be counted.
func bothFixture(t *testing.T) (tr *Transport, n int, events, counts []*operation, received <-chan string) {
	if _, ok := writeSyscalls(); !ok {
		t.Skip("needs /proc/self/io to count write system calls")
	}
	procs := runtime.GOMAXPROCS(2)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	tr = New(Options{})
	t.Cleanup(tr.Shutdown)
	n = 3*fanOutChunk + 100
	events, counts, received = subscribersOfBoth(t, tr, n)
	return tr, n, events, counts, received
}

// checkBoth checks that about one write per connection was made since
// before (write system calls), and reads what each of n clients of
// subscribersOfBoth got: the event if it subscribed to it, then the count.
//
// One write per frame would be n + withEvents (about 1.67 n). The bound,
// n + n/4, leaves room for what timing decides: a fan-out adopted by a
// running turn rides along only to the connections the turn has not
// written yet, and under a loaded machine (CI runs every package at once,
// under -race) the turn may have written several percent of them before it
// polls for riders (1,803 and 1,827 writes for 1,636 connections seen).
func checkBoth(t *testing.T, before int64, n, withEvents int, received <-chan string) {
	t.Helper()
	checkBothWithin(t, before, n, n/4, withEvents, received)
}

// checkBothWithin is checkBoth with slack writes beyond one per
// connection allowed.
func checkBothWithin(t *testing.T, before int64, n, slack, withEvents int, received <-chan string) {
	t.Helper()
	after, _ := writeSyscalls()
	assert.Less(t, n+slack, n+withEvents, "the bound must tell one write per connection from one per frame")
	assert.LessOrEqual(t, after-before, int64(n+slack), "about one write per connection, not one per frame (%d connections)", n)
	seen := 0
	for range n {
		got := <-received
		event := strings.Index(got, `"notificationAdded"`)
		count := strings.Index(got, `"unreadCount"`)
		require.True(t, count >= 0 && count > event, "the event if any, then the count: %s", got)
		if event >= 0 {
			seen++
		}
	}
	assert.Equal(t, withEvents, seen)
}

// TestSharedTurnWritesEachConnectionOnce: two large fan-outs that waited
// for the same turn (an event, and the latest value it moved, for
// subscribers of both on the same connections, and of the latter alone on
// others) reach each connection in one write, the event's frame first.
func TestSharedTurnWritesEachConnectionOnce(t *testing.T) {
	tr, n, events, counts, received := bothFixture(t)
	ctx := context.Background()
	release := holdTurn(t, &tr.fanOuts)
	results := make(chan bool, 2)
	go func() { results <- tr.fanOut(ctx, &fanOutJob{members: counts, result: countFrame, class: latestTurn}) }()
	waitingFor(t, &tr.fanOuts, 1)
	go func() { results <- tr.fanOut(ctx, &fanOutJob{members: events, result: eventFrame, class: eventTurn}) }()
	waitingFor(t, &tr.fanOuts, 2)
	before, _ := writeSyscalls()
	release()
	assert.True(t, <-results)
	assert.True(t, <-results)
	checkBoth(t, before, n, len(events), received)
}

// TestLateFanOutsRideAlong: a large fan-out that asks for a turn while
// another runs is adopted by it: its frames go in the same write as the
// running one's to every connection not written yet, the rest right after,
// and it hears how the turn went.
func TestLateFanOutsRideAlong(t *testing.T) {
	tr, n, events, counts, received := bothFixture(t)
	ctx := context.Background()
	late := make(chan bool, 1)
	var before int64
	// The events' turn starts once the counts wait, as when the counts
	// are ready a moment after the event they follow.
	ok := tr.fanOuts.take(ctx, &fanOutJob{members: events, result: eventFrame, class: eventTurn}, func(batch []*fanOutJob) (bool, []*fanOutJob) {
		go func() { late <- tr.fanOut(ctx, &fanOutJob{members: counts, result: countFrame, class: latestTurn}) }()
		waitingFor(t, &tr.fanOuts, 1)
		before, _ = writeSyscalls()
		return tr.runTurn(ctx, batch)
	})
	assert.True(t, ok)
	select {
	case ok := <-late:
		assert.True(t, ok, "the adopted fan-out hears how it went")
	case <-time.After(5 * time.Second):
		t.Fatal("the adopted fan-out never heard")
	}
	checkBoth(t, before, n, len(events), received)
	tr.fanOuts.mu.Lock()
	assert.False(t, tr.fanOuts.busy, "the turn is free again")
	tr.fanOuts.mu.Unlock()
}

// TestAdoptionCostsLittlePerMember: adopting a fan-out to many connections
// (a broadcast's counts riding along its notification) costs a map entry
// and a flag per member, not a frame each, and still hands each
// connection its frames once and in order, with the rest left for rest.
func TestAdoptionCostsLittlePerMember(t *testing.T) {
	const n = 8000
	conns := make([]*conn, n)
	members := make([]*operation, 0, n+1)
	for i := range conns {
		conns[i] = &conn{}
		members = append(members, &operation{conn: conns[i], id: "u"})
	}
	twice := &operation{conn: conns[7], id: "v"} // one connection, two operations of the group
	members = append(members, twice)
	job := &fanOutJob{members: members, result: countFrame, class: latestTurn}

	var a *adoption
	perMember := math.Inf(1)
	for range 3 { // the least of three: another goroutine may allocate meanwhile
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		a = newAdoption(job)
		runtime.ReadMemStats(&after)
		perMember = min(perMember, float64(after.TotalAlloc-before.TotalAlloc)/float64(len(members)))
	}
	t.Logf("adopting a fan-out to %d members: %.1f bytes a member", len(members), perMember)
	assert.Less(t, perMember, 48.0) // a frame each (ride, 32 bytes) and a growing map came to about 100

	r := &riders{turns: &turns{}}
	r.adopted.Store(&[]*adoption{a})
	got := r.along(conns[7], nil)
	require.Len(t, got, 2)
	assert.Equal(t, []*operation{members[7], twice}, []*operation{got[0].op, got[1].op})
	assert.Empty(t, r.along(conns[7], nil), "taken once")
	assert.Len(t, r.along(conns[3], nil), 1)
	rest := r.rest()
	require.Len(t, rest, 1)
	assert.Len(t, rest[0].members, n-2, "every member not taken, once")
	assert.Empty(t, r.rest())
}

// followed is a transport on two processors whose events (field "e") are
// followed by counts (field "c"): a large fan-out of an event waits up to
// wait for the counts' (Options.Followers).
func followed(t *testing.T, wait time.Duration) *Transport {
	if _, ok := writeSyscalls(); !ok {
		t.Skip("needs /proc/self/io to count write system calls")
	}
	procs := runtime.GOMAXPROCS(2)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	tr := New(Options{Followers: map[string][]string{"e": {"c"}}, FollowWait: wait})
	t.Cleanup(tr.Shutdown)
	return tr
}

// eventJob and countJob are fan-outs of followed's fields; the event's
// waits for followers up to its transport's FollowWait.
func eventJob(tr *Transport, members []*operation) *fanOutJob {
	return &fanOutJob{members: members, result: eventFrame, class: eventTurn, field: "e", awaits: []string{"c"}, wait: tr.opts.FollowWait}
}

func countJob(members []*operation) *fanOutJob {
	return &fanOutJob{members: members, result: countFrame, class: latestTurn, field: "c", follows: []string{"e"}}
}

// awaiting waits until tr's running turn waits for followers.
func awaiting(t *testing.T, tr *turns) {
	t.Helper()
	require.Eventually(t, tr.awaiting.Load, 5*time.Second, time.Millisecond)
}

// TestEventWaitsForItsFollowers: a large fan-out of an event that others
// follow (a message, and the room-list entries it moves) holds its turn
// until the follower's fan-out asks for one, so that each subscriber of
// both gets both frames in one write, the event's first; it goes as soon
// as the follower comes, not when the wait is over.
func TestEventWaitsForItsFollowers(t *testing.T) {
	firstWaitsForSecond(t, func(tr *Transport, events, _ []*operation) *fanOutJob { return eventJob(tr, events) },
		func(_ *Transport, _, counts []*operation) *fanOutJob { return countJob(counts) })
}

// firstWaitsForSecond starts the fan-out first makes, of an event or of
// its follower, to subscribers of the event and of the follower on two
// processors; once its turn waits, 50 ms later, the one second makes. It
// checks that the turn went as soon as the second came, not when the wait
// was over, and that every subscriber of both got both frames in one
// write, the event's first: nothing was written before the second came.
func firstWaitsForSecond(t *testing.T, first, second func(tr *Transport, events, counts []*operation) *fanOutJob) {
	tr := followed(t, 20*time.Second)
	n := 3*fanOutChunk + 100
	events, counts, received := subscribersOfBoth(t, tr, n)
	ctx := context.Background()
	before, _ := writeSyscalls()
	start := time.Now()
	results := make(chan bool, 2)
	go func() { results <- tr.fanOut(ctx, first(tr, events, counts)) }()
	awaiting(t, &tr.fanOuts)
	time.Sleep(50 * time.Millisecond) // the other is ready a while later
	go func() { results <- tr.fanOut(ctx, second(tr, events, counts)) }()
	assert.True(t, <-results)
	assert.True(t, <-results)
	assert.Less(t, time.Since(start), 10*time.Second, "the turn went when the other came")
	checkBothWithin(t, before, n, n/100, len(events), received)
}

// TestSmallFollowerJoinsTheWaitingTurn: a follower's fan-out too small to
// take a turn of its own joins the turn that waits for it, rather than
// going ahead of the event it follows.
func TestSmallFollowerJoinsTheWaitingTurn(t *testing.T) {
	tr := followed(t, 20*time.Second)
	n := 3*fanOutChunk + 100
	few := fanOutChunk
	events, counts, received := subscribersOf(t, tr, n, func(int) bool { return true }, func(i int) bool { return i < few })
	require.False(t, largeFanOut(len(counts)))
	ctx := context.Background()
	start := time.Now()
	results := make(chan bool, 2)
	go func() { results <- tr.fanOut(ctx, eventJob(tr, events)) }()
	awaiting(t, &tr.fanOuts)
	go func() { results <- tr.fanOut(ctx, countJob(counts)) }()
	assert.True(t, <-results)
	assert.True(t, <-results)
	assert.Less(t, time.Since(start), 10*time.Second, "the event went when its follower came")
	withCount := 0
	for range n {
		got := <-received
		event := strings.Index(got, `"notificationAdded"`)
		require.GreaterOrEqual(t, event, 0, "every client has the event: %s", got)
		if count := strings.Index(got, `"unreadCount"`); count >= 0 {
			require.Greater(t, count, event, "the event first: %s", got)
			withCount++
		}
	}
	assert.Equal(t, few, withCount)
}

// TestFollowWaitIsBounded: an event whose follower never comes goes out
// once FollowWait is over, to everyone.
func TestFollowWaitIsBounded(t *testing.T) {
	const wait = 300 * time.Millisecond
	tr := followed(t, wait)
	n := 3*fanOutChunk + 100
	events, _, received := subscribersOf(t, tr, n, func(int) bool { return true }, func(int) bool { return false })
	start := time.Now()
	assert.True(t, tr.fanOut(context.Background(), eventJob(tr, events)))
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, wait, "it waited for a follower")
	assert.Less(t, took, 10*time.Second, "but not for long")
	for range n {
		assert.Contains(t, <-received, `"notificationAdded"`)
	}
	assert.False(t, tr.fanOuts.awaiting.Load(), "the wait is over")
	assert.True(t, tr.fanOuts.hasMissed("e"), "and the next event does not wait (see TestFollowWaitOnlyWhenFollowersWatch)")
}

// TestFollowWaitOnlyWhenFollowersWatch: an event waits for followers only
// when the groups of its followers hold at least half as many members as
// the event goes to (an event most of whose subscribers see no follower
// goes at once), and only an event of a field that has followers.
func TestFollowWaitOnlyWhenFollowersWatch(t *testing.T) {
	tr := New(Options{Followers: map[string][]string{"e": {"c"}}, FollowWait: time.Second})
	t.Cleanup(tr.Shutdown)
	events, xs := groupOf(tr, "e"), groupOf(tr, "x")
	fields, wait := tr.followWait(events, 1000)
	assert.Zero(t, wait, "no group of a follower")
	assert.Empty(t, fields)

	running := runningGroups(tr, 400, "c", "x")
	g := running[0]
	_, wait = tr.followWait(events, 1000)
	assert.Zero(t, wait, "400 followers for 1,000 subscribers of the event")
	_, wait = tr.followWait(xs, 100)
	assert.Zero(t, wait, "a field without followers")
	fields, wait = tr.followWait(events, 800)
	assert.Equal(t, time.Second, wait, "400 followers for 800 subscribers of the event")
	assert.Equal(t, []string{"c"}, fields)

	tr.fanOuts.awaitFollowers(context.Background(), &fanOutJob{field: "e", awaits: []string{"c"}, wait: time.Millisecond}) // in vain
	_, wait = tr.followWait(events, 800)
	assert.Zero(t, wait, "no wait after a wait in vain")
	assert.True(t, tr.fanOut(context.Background(), &fanOutJob{members: nil, field: "c", follows: []string{"e"}}))
	_, wait = tr.followWait(events, 800)
	assert.Equal(t, time.Second, wait, "a follower came: events wait for theirs again")

	tr.forgetGroup(g)
	_, wait = tr.followWait(events, 800)
	assert.Zero(t, wait, "the followers' group has ended")
}

// TestVainWaitStopsOnlyItsField: a wait of one field's events that no
// follower ended stops that field's waits alone; another followed field's
// events go on waiting for theirs, and a follower of the other field does
// not restart the first's.
func TestVainWaitStopsOnlyItsField(t *testing.T) {
	tr := New(Options{Followers: map[string][]string{"e": {"c"}, "m": {"r"}}, FollowWait: time.Second})
	t.Cleanup(tr.Shutdown)
	running := runningGroups(tr, 500, "c", "r")
	counts, lists := running[0], running[1]
	assert.Equal(t, []string{"e"}, counts.follows)
	assert.Equal(t, []string{"m"}, lists.follows)
	es, ms := groupOf(tr, "e"), groupOf(tr, "m")

	tr.fanOuts.awaitFollowers(context.Background(), &fanOutJob{field: "e", awaits: []string{"c"}, wait: time.Millisecond}) // in vain
	_, wait := tr.followWait(es, 800)
	assert.Zero(t, wait, "e waited in vain")
	_, wait = tr.followWait(ms, 800)
	assert.Equal(t, time.Second, wait, "m's events still wait for theirs")

	assert.True(t, tr.fanOut(context.Background(), &fanOutJob{field: "r", follows: lists.follows}))
	_, wait = tr.followWait(es, 800)
	assert.Zero(t, wait, "m's follower does not restart e's waits")
	assert.True(t, tr.fanOut(context.Background(), &fanOutJob{field: "c", follows: counts.follows}))
	_, wait = tr.followWait(es, 800)
	assert.Equal(t, time.Second, wait, "e's follower does")
}

// runningGroups puts a group of each of fields on tr, as if running, with
// members members each, and returns them.
func runningGroups(tr *Transport, members int, fields ...string) []*group {
	var gs []*group
	tr.groupsMu.Lock()
	defer tr.groupsMu.Unlock()
	for _, field := range fields {
		g := groupOf(tr, field)
		tr.putGroup(g)
		for range members {
			g.members[&operation{}] = struct{}{}
		}
		gs = append(gs, g)
	}
	return gs
}

// groupOf is a group of field's subscriptions on tr, not running.
func groupOf(tr *Transport, field string) *group {
	g, _ := tr.newGroup(context.Background(), &shareInfo{key: field, field: field})
	return g
}

// TestFollowerWaitsForTheEventItFollows: a large fan-out of a follower
// that is ready before the event it follows (a room-list entry read before
// the message is) holds its turn until the event's fan-out asks for one:
// each subscriber of both gets both frames in one write, the event's
// first.
func TestFollowerWaitsForTheEventItFollows(t *testing.T) {
	firstWaitsForSecond(t, func(tr *Transport, _, counts []*operation) *fanOutJob {
		count := countJob(counts)
		count.awaits, count.wait = []string{"e"}, tr.opts.FollowWait
		return count
	}, func(tr *Transport, events, _ []*operation) *fanOutJob { return eventJob(tr, events) })
}

// TestFollowWaitOfAFollower: a follower's large fan-out waits for the
// event it follows only when no fan-out of that event's field began
// within FollowWait (then the event is yet to come), and when the event's
// groups hold at least half as many members as the follower goes to.
func TestFollowWaitOfAFollower(t *testing.T) {
	const wait = 200 * time.Millisecond
	tr := New(Options{Followers: map[string][]string{"e": {"c"}}, FollowWait: wait})
	t.Cleanup(tr.Shutdown)
	runningGroups(tr, 500, "e")
	counts := runningGroups(tr, 0, "c")[0]
	fields, w := tr.followWait(counts, 1000)
	assert.Equal(t, wait, w, "500 subscribers of the event for 1,000 of the count, and no event yet")
	assert.Equal(t, []string{"e"}, fields)
	_, w = tr.followWait(counts, 1200)
	assert.Zero(t, w, "500 subscribers of the event for 1,200 of the count")

	assert.True(t, tr.fanOut(context.Background(), &fanOutJob{field: "e"}))
	_, w = tr.followWait(counts, 1000)
	assert.Zero(t, w, "the event went just now: the count follows it")
	time.Sleep(wait + 50*time.Millisecond)
	_, w = tr.followWait(counts, 1000)
	assert.Equal(t, wait, w, "the last event went long ago: this count's is yet to come")

	tr.fanOuts.awaitFollowers(context.Background(), &fanOutJob{field: "c", awaits: []string{"e"}, wait: time.Millisecond}) // in vain
	_, w = tr.followWait(counts, 1000)
	assert.Zero(t, w, "no wait after a wait in vain")
	assert.True(t, tr.fanOut(context.Background(), &fanOutJob{field: "e"}))
	time.Sleep(wait + 50*time.Millisecond)
	_, w = tr.followWait(counts, 1000)
	assert.Equal(t, wait, w, "an event came: counts wait for theirs again")
}
