package gqlws

import (
	"context"
	"fmt"
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
		tr.take(context.Background(), &fanOutJob{}, func([]*fanOutJob) bool { close(running); <-hold; return true })
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
	run := func(batch []*fanOutJob) bool {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, j := range batch {
			got = append(got, names[j])
		}
		ran = append(ran, got)
		return false // a part of the members missed it: every job hears so
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

// TestSharedTurnWritesEachConnectionOnce: two large fan-outs that waited
// for the same turn (an event, and the latest value it moved, for
// subscribers of both on the same connections, and of the latter alone on
// others) reach each connection in one write, the event's frame first.
func TestSharedTurnWritesEachConnectionOnce(t *testing.T) {
	if _, ok := writeSyscalls(); !ok {
		t.Skip("needs /proc/self/io to count write system calls")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	const n = 3*fanOutChunk + 100
	var events, counts []*operation
	received := make(chan string, n)
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
			var got []byte
			buf := make([]byte, 4096)
			for strings.Count(string(got), `"payload"`) < frames {
				_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
				k, err := client.Read(buf)
				if err != nil {
					received <- fmt.Sprintf("connection %d: %v after %q", i, err, got)
					return
				}
				got = append(got, buf[:k]...)
			}
			received <- string(got)
		}()
	}
	ctx := context.Background()
	release := holdTurn(t, &tr.fanOuts)
	results := make(chan bool, 2)
	go func() {
		results <- tr.fanOut(ctx, counts, queuedFrame{result: newSharedResult([]byte(`{"data":{"unreadCount":7}}`), false), latest: true}, latestTurn)
	}()
	waitingFor(t, &tr.fanOuts, 1)
	go func() {
		results <- tr.fanOut(ctx, events, queuedFrame{result: newSharedResult([]byte(`{"data":{"notificationAdded":{"id":"9"}}}`), false)}, eventTurn)
	}()
	waitingFor(t, &tr.fanOuts, 2)
	before, _ := writeSyscalls()
	release()
	assert.True(t, <-results)
	assert.True(t, <-results)
	after, _ := writeSyscalls()
	assert.LessOrEqual(t, after-before, int64(n+n/10), "about one write per connection, not one per frame (%d connections)", n)
	withEvent := 0
	for range n {
		got := <-received
		event := strings.Index(got, `"notificationAdded"`)
		count := strings.Index(got, `"unreadCount"`)
		require.True(t, count >= 0 && count > event, "the event if any, then the count: %s", got)
		if event >= 0 {
			withEvent++
		}
	}
	assert.Equal(t, len(events), withEvent)
}
