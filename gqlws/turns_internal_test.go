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
	got := make(chan string, n)
	for i := range n {
		server, client := loopbackPair(t)
		t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
		c := benchConnOver(tr, newFrameConn(server), TransportWS)
		frames := 1
		if i%3 != 0 {
			events = append(events, &operation{conn: c, id: "e", idJSON: appendJSONString(nil, "e")})
			frames++
		}
		counts = append(counts, &operation{conn: c, id: "c", idJSON: appendJSONString(nil, "c")})
		go func() {
			var read []byte
			buf := make([]byte, 4096)
			for strings.Count(string(read), `"payload"`) < frames {
				_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
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
	after, _ := writeSyscalls()
	assert.Less(t, n+n/4, n+withEvents, "the bound must tell one write per connection from one per frame")
	assert.LessOrEqual(t, after-before, int64(n+n/4), "about one write per connection, not one per frame (%d connections)", n)
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
	go func() { results <- tr.fanOut(ctx, counts, countFrame, latestTurn) }()
	waitingFor(t, &tr.fanOuts, 1)
	go func() { results <- tr.fanOut(ctx, events, eventFrame, eventTurn) }()
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
		go func() { late <- tr.fanOut(ctx, counts, countFrame, latestTurn) }()
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
