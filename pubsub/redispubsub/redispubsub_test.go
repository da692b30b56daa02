package redispubsub_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
)

// prefix returns a channel prefix of its own for one test, so tests sharing
// a Redis do not see each other's messages.
func prefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbtest:" + hex.EncodeToString(b) + ":"
}

func TestConformance(t *testing.T) {
	url := redistest.URL(t)
	pubsubtest.Run(t, func(tb testing.TB, buffer int) pubsub.Broker {
		return newBroker(tb, redistest.Client(tb, url), redispubsub.Options{Prefix: prefix(), Buffer: buffer})
	})
}

// newBroker returns a broker on client, closed when the test ends (before
// the client).
func newBroker(tb testing.TB, client *redis.Client, opts redispubsub.Options) *redispubsub.Broker {
	b := redispubsub.New(client, opts)
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// TestAcrossReplicas: what one broker publishes reaches the subscribers of
// another on the same Redis.
func TestAcrossReplicas(t *testing.T) {
	url := redistest.URL(t)
	p := prefix()
	a := newBroker(t, redistest.Client(t, url), redispubsub.Options{Prefix: p})
	b := newBroker(t, redistest.Client(t, url), redispubsub.Options{Prefix: p})
	subA, err := a.Subscribe(t.Context(), "room:1")
	require.NoError(t, err)
	subB, err := b.Subscribe(t.Context(), "room:1")
	require.NoError(t, err)
	require.NoError(t, a.Publish(t.Context(), "room:1", []byte("hello")))
	for _, sub := range []*pubsub.Subscription{subA, subB} {
		assertReceives(t, sub, "hello", "not delivered")
	}
}

// TestRedisOutage: when Redis dies, subscriptions end with ErrDisconnected
// (their owners catch up from the database) and publishing fails; when it
// is back, subscribing and publishing work again.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, redistest.Client(t, srv.URL()), redispubsub.Options{})
	sub, err := b.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)
	require.NoError(t, b.Ping(t.Context()))

	srv.Stop()
	select {
	case <-sub.Done():
		assert.True(t, errors.Is(sub.Err(), redispubsub.ErrDisconnected), "ended with %v", sub.Err())
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription outlived its connection")
	}
	assert.Error(t, b.Publish(t.Context(), "statuses", []byte("lost")))
	assert.Error(t, b.Ping(t.Context()), "readiness sees the outage")
	_, err = b.Subscribe(t.Context(), "statuses")
	assert.Error(t, err, "no subscription while Redis is away")

	srv.Start()
	var again *pubsub.Subscription
	require.Eventually(t, func() bool {
		again, err = b.Subscribe(t.Context(), "statuses")
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "subscribing works again once Redis is back")
	require.NoError(t, b.Publish(t.Context(), "statuses", []byte("back")))
	assertReceives(t, again, "back", "not delivered after the outage")
}

// TestPublishDoesNotWaitForAStuckSubscribe: a Subscribe that waits on a
// Redis that stopped answering (it holds the broker's lock while it dials
// the subscription connection) delays no Publish beyond the publisher's
// own deadline, on a client that heeds deadlines (as the server's does).
func TestPublishDoesNotWaitForAStuckSubscribe(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL(t))
	require.NoError(t, err)
	proxy := faultproxy.Start(t, opts.Addr)
	opts.Addr, opts.ContextTimeoutEnabled = proxy.Addr(), true
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	b := newBroker(t, client, redispubsub.Options{Prefix: prefix()})

	proxy.Stall()
	subscribed := make(chan error, 1)
	go func() {
		_, err := b.Subscribe(t.Context(), "stuck")
		subscribed <- err
	}()
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		start := time.Now()
		assert.Error(t, b.Publish(ctx, "t", []byte("x")), "Redis does not answer")
		assert.Less(t, time.Since(start), 500*time.Millisecond, "the publisher's deadline, not the subscribe, decides")
		cancel()
	}
	proxy.Forward()
	<-subscribed
}

// TestBreakerOnAFrozenRedis: behind a pubsub.Breaker, a redis-server
// stopped with SIGSTOP costs one publish the breaker's timeout; the next
// ones are skipped at once; once it runs again, a probe closes the circuit,
// the subscribers are told to catch up (a publish was lost), and publishes
// are delivered.
func TestBreakerOnAFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	br := pubsub.NewBreaker(redispubsub.New(client, redispubsub.Options{Prefix: prefix()}), pubsub.BreakerOptions{})
	t.Cleanup(func() { _ = br.Close() })
	sub, err := br.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)

	srv.Freeze()
	start := time.Now()
	assert.ErrorIs(t, br.Publish(t.Context(), "statuses", []byte("lost")), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "the breaker's timeout")
	start = time.Now()
	for range 100 {
		assert.ErrorIs(t, br.Publish(t.Context(), "statuses", []byte("skipped")), pubsub.ErrBrokerDown)
	}
	assert.Less(t, time.Since(start), 50*time.Millisecond, "skipped at once")

	srv.Thaw()
	require.Eventually(t, func() bool { return br.Ping(t.Context()) == nil },
		10*time.Second, 50*time.Millisecond, "a probe closes the circuit once Redis answers")
	select {
	case <-sub.Done():
		assert.ErrorIs(t, sub.Err(), pubsub.ErrResync, "announcements were lost: the subscriber catches up")
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription outlived the lost announcements")
	}
	again, err := br.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)
	require.NoError(t, br.Publish(t.Context(), "statuses", []byte("back")))
	assertReceives(t, again, "back", "not delivered after the fault")
}

// TestSweepSurvivesAPanic: a round of the idle-channel sweep that panics
// is reported once and costs that round only: a later round unsubscribes
// the idle channel in Redis, and the broker keeps delivering.
func TestSweepSurvivesAPanic(t *testing.T) {
	client := redistest.Client(t, redistest.URL(t))
	var panicked atomic.Int32
	var once sync.Once
	guard := &panics.Guard{
		Log:   slog.New(slog.DiscardHandler),
		Count: func(where string) { panicked.Add(1) },
		Inject: func(where string) {
			if where == "redis.sweep" {
				once.Do(func() { panic("injected") })
			}
		},
	}
	p := prefix()
	b := newBroker(t, client, redispubsub.Options{Prefix: p, IdleTopic: 200 * time.Millisecond, Panics: guard})
	subscribers := func() int64 {
		n, err := client.PubSubNumSub(t.Context(), p+"idle").Result()
		require.NoError(t, err)
		return n[p+"idle"]
	}
	sub, err := b.Subscribe(t.Context(), "idle")
	require.NoError(t, err)
	require.EqualValues(t, 1, subscribers())
	sub.Close()
	require.Eventually(t, func() bool { return panicked.Load() == 1 }, 5*time.Second, 10*time.Millisecond, "the first round panics")
	require.Eventually(t, func() bool { return subscribers() == 0 }, 5*time.Second, 10*time.Millisecond,
		"a later round unsubscribes the idle channel")
	assert.EqualValues(t, 1, panicked.Load(), "once")

	live, err := b.Subscribe(t.Context(), "live")
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "live", []byte("still")))
	assertReceives(t, live, "still", "not delivered after the sweep's panic")
}

// assertReceives asserts that sub's next message, within 5 s, is want.
func assertReceives(t *testing.T, sub *pubsub.Subscription, want, what string) {
	t.Helper()
	select {
	case m := <-sub.C():
		assert.Equal(t, want, string(m), what)
	case <-time.After(5 * time.Second):
		t.Fatal(what)
	}
}
