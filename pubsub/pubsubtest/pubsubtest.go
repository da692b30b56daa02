// Package pubsubtest is the conformance suite every pubsub.Broker passes:
// the in-process broker today, the Redis broker for several replicas. A
// backend's test calls Run with a constructor of fresh, isolated brokers.
package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub"
)

// NewBroker returns a fresh broker for one test, whose subscriptions buffer
// buffer messages. It registers its own cleanup with t.Cleanup. Two brokers
// made for one test must share their topics (as replicas sharing a Redis do)
// when the backend is distributed; the suite only relies on one.
type NewBroker func(t testing.TB, buffer int) pubsub.Broker

// wait is how long the suite waits for an event that must come.
const wait = 5 * time.Second

// Run runs the conformance suite against brokers made by newBroker.
func Run(t *testing.T, newBroker NewBroker) {
	t.Run("DeliversInPublishOrder", func(t *testing.T) { testOrder(t, newBroker) })
	t.Run("FansOutToEverySubscriber", func(t *testing.T) { testFanOut(t, newBroker) })
	t.Run("TopicsAreIsolated", func(t *testing.T) { testIsolation(t, newBroker) })
	t.Run("NothingFromBeforeSubscribe", func(t *testing.T) { testNoHistory(t, newBroker) })
	t.Run("ContextEndsSubscription", func(t *testing.T) { testContextEnd(t, newBroker) })
	t.Run("CloseEndsSubscription", func(t *testing.T) { testSubscriptionClose(t, newBroker) })
	t.Run("SlowSubscriberIsDroppedNotWaitedFor", func(t *testing.T) { testSlowConsumer(t, newBroker) })
	t.Run("ConcurrentPublishers", func(t *testing.T) { testConcurrentPublishers(t, newBroker) })
	t.Run("ClosedBrokerRefuses", func(t *testing.T) { testBrokerClose(t, newBroker) })
	t.Run("PingAnswersUntilClosed", func(t *testing.T) { testPing(t, newBroker) })
}

func subscribe(t testing.TB, b pubsub.Broker, topic string) *pubsub.Subscription {
	t.Helper()
	sub, err := b.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	t.Cleanup(sub.Close)
	return sub
}

func publish(t testing.TB, b pubsub.Broker, topic, payload string) {
	t.Helper()
	require.NoError(t, b.Publish(t.Context(), topic, []byte(payload)))
}

// receive reads the next n payloads of sub, failing the test if they do not
// come within wait.
func receive(t testing.TB, sub *pubsub.Subscription, n int) []string {
	t.Helper()
	got := make([]string, 0, n)
	deadline := time.After(wait)
	for len(got) < n {
		select {
		case p, ok := <-sub.C():
			require.True(t, ok, "subscription ended after %d of %d messages: %v", len(got), n, sub.Err())
			got = append(got, string(p))
		case <-deadline:
			t.Fatalf("received %d of %d messages within %s", len(got), n, wait)
		}
	}
	return got
}

// quiet asserts that sub receives nothing for a short while.
func quiet(t testing.TB, sub *pubsub.Subscription) {
	t.Helper()
	select {
	case p, ok := <-sub.C():
		if ok {
			t.Fatalf("unexpected message %q", p)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func testOrder(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 1000)
	sub := subscribe(t, b, "order")
	want := seq("m", 500)
	for _, m := range want {
		publish(t, b, "order", m)
	}
	assert.Equal(t, want, receive(t, sub, len(want)))
}

func testFanOut(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 100)
	subs := make([]*pubsub.Subscription, 10)
	for i := range subs {
		subs[i] = subscribe(t, b, "fan")
	}
	want := seq("f", 20)
	for _, m := range want {
		publish(t, b, "fan", m)
	}
	for i, sub := range subs {
		assert.Equal(t, want, receive(t, sub, len(want)), "subscriber %d", i)
	}
}

func testIsolation(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	a, c := subscribe(t, b, "a"), subscribe(t, b, "c")
	publish(t, b, "a", "for-a")
	publish(t, b, "c", "for-c")
	assert.Equal(t, []string{"for-a"}, receive(t, a, 1))
	assert.Equal(t, []string{"for-c"}, receive(t, c, 1))
	quiet(t, a)
	quiet(t, c)
}

func testNoHistory(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	publish(t, b, "late", "before")
	sub := subscribe(t, b, "late")
	publish(t, b, "late", "after")
	assert.Equal(t, []string{"after"}, receive(t, sub, 1))
}

func testContextEnd(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := b.Subscribe(ctx, "ctx")
	require.NoError(t, err)
	cancel()
	waitClosed(t, sub)
	assert.ErrorIs(t, sub.Err(), context.Canceled)
	// Publishing to a topic whose subscribers left is fine.
	publish(t, b, "ctx", "nobody")
}

func testSubscriptionClose(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	sub := subscribe(t, b, "close")
	other := subscribe(t, b, "close")
	sub.Close()
	waitClosed(t, sub)
	assert.NoError(t, sub.Err())
	publish(t, b, "close", "still")
	assert.Equal(t, []string{"still"}, receive(t, other, 1))
}

func testSlowConsumer(t *testing.T, newBroker NewBroker) {
	const buffer, total = 8, 200
	b := newBroker(t, buffer)
	slow := subscribe(t, b, "slow")
	fast := subscribe(t, b, "slow")

	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range fast.C() {
			got = append(got, string(p))
			if len(got) == total {
				return
			}
		}
	}()
	published := make(chan struct{})
	go func() {
		defer close(published)
		for _, m := range seq("s", total) {
			if err := b.Publish(t.Context(), "slow", []byte(m)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			// Give the fast reader a chance; the slow one never reads.
			time.Sleep(100 * time.Microsecond)
		}
	}()
	select {
	case <-published:
	case <-time.After(wait):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("fast subscriber received %d of %d", len(got), total)
	}
	assert.Equal(t, seq("s", total), got)

	// The slow one got at most its buffer, in order, then was dropped.
	var kept []string
	for p := range slow.C() {
		kept = append(kept, string(p))
	}
	assert.ErrorIs(t, slow.Err(), pubsub.ErrSlowConsumer)
	assert.LessOrEqual(t, len(kept), buffer+1)
	assert.Equal(t, seq("s", total)[:len(kept)], kept)
}

func testConcurrentPublishers(t *testing.T, newBroker NewBroker) {
	const publishers, each = 8, 100
	b := newBroker(t, publishers*each)
	sub := subscribe(t, b, "conc")
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := b.Publish(t.Context(), "conc", fmt.Appendf(nil, "%d/%d", p, i)); err != nil {
					t.Errorf("publish: %v", err)
				}
			}
		})
	}
	wg.Wait()
	got := receive(t, sub, publishers*each)
	// Each publisher's own messages arrive in its order.
	next := make(map[int]int)
	for _, m := range got {
		var p, i int
		_, err := fmt.Sscanf(m, "%d/%d", &p, &i)
		require.NoError(t, err)
		require.Equal(t, next[p], i, "publisher %d out of order", p)
		next[p]++
	}
	quiet(t, sub)
}

func testBrokerClose(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	sub := subscribe(t, b, "bye")
	require.NoError(t, b.Close())
	waitClosed(t, sub)
	assert.ErrorIs(t, sub.Err(), pubsub.ErrClosed)
	assert.ErrorIs(t, b.Publish(t.Context(), "bye", []byte("x")), pubsub.ErrClosed)
	_, err := b.Subscribe(t.Context(), "bye")
	assert.ErrorIs(t, err, pubsub.ErrClosed)
	assert.NoError(t, b.Close(), "a second Close is harmless")
}

func testPing(t *testing.T, newBroker NewBroker) {
	b := newBroker(t, 10)
	require.NoError(t, b.Ping(t.Context()))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, b.Ping(ctx), context.Canceled, "an ended context is not waited on")
	require.NoError(t, b.Close())
	assert.ErrorIs(t, b.Ping(t.Context()), pubsub.ErrClosed)
}

func waitClosed(t testing.TB, sub *pubsub.Subscription) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case _, ok := <-sub.C():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal(errors.New("subscription was not closed"))
		}
	}
}
