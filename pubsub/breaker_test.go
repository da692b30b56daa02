package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
)

// TestBreakerConformance: a broker behind a Breaker is still a broker.
func TestBreakerConformance(t *testing.T) {
	pubsubtest.Run(t, func(tb testing.TB, buffer int) pubsub.Broker {
		b := pubsub.NewBreaker(mempubsub.New(buffer), pubsub.BreakerOptions{})
		tb.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// hanging is a broker whose publishes and pings, while hang is set, never
// answer, whatever their context says, until the test releases them; it
// counts the publishes and pings that reached it.
type hanging struct {
	*pubsubtest.Outage
	hang      atomic.Bool
	release   chan struct{}
	publishes atomic.Int64
	pings     atomic.Int64
}

func newHanging() *hanging {
	return &hanging{Outage: pubsubtest.NewOutage(mempubsub.New(0)), release: make(chan struct{})}
}

func (h *hanging) Publish(ctx context.Context, topic string, payload []byte) error {
	h.publishes.Add(1)
	if h.hang.Load() {
		<-h.release
	}
	return h.Outage.Publish(ctx, topic, payload)
}

func (h *hanging) Ping(ctx context.Context) error {
	h.pings.Add(1)
	if h.hang.Load() {
		<-h.release
	}
	return h.Outage.Ping(ctx)
}

// breakerOn returns a Breaker on b with the default policy, recording its
// changes, closed at the end of the bubble. Its subscribers of topic "t"
// are not ended by a resync (TestBreakerResyncs… tests that).
func breakerOn(t *testing.T, b pubsub.Broker) (*pubsub.Breaker, func() []bool) {
	var (
		mu      sync.Mutex
		changes []bool
	)
	br := pubsub.NewBreaker(b, pubsub.BreakerOptions{
		Changed: func(down bool, _ error) {
			mu.Lock()
			changes = append(changes, down)
			mu.Unlock()
		},
		Resync: func(topic string) bool { return topic != "t" },
	})
	t.Cleanup(func() { _ = br.Close() })
	return br, func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), changes...)
	}
}

// TestBreakerSkipsWhileDown: after a failed publish, publishes and pings
// are skipped at once (without reaching the broker); the first call after a
// back-off of 1 s, doubling to 5 s while the broker stays down, starts a
// probe (a ping no caller waits for); once the broker is back, the probe
// closes the circuit and publishes reach subscribers again.
func TestBreakerSkipsWhileDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHanging()
		br, changes := breakerOn(t, h)
		sub, err := br.Subscribe(t.Context(), "t")
		require.NoError(t, err)
		require.NoError(t, br.Publish(t.Context(), "t", []byte("a")))
		assert.Equal(t, "a", string(<-sub.C()))

		h.SetDown(true)
		assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("b")), pubsubtest.ErrDown, "the failure itself")
		assert.True(t, br.Down())
		start := time.Now()
		for range 100 {
			assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("c")), pubsub.ErrBrokerDown)
		}
		assert.ErrorIs(t, br.Ping(t.Context()), pubsub.ErrBrokerDown, "readiness does not wait either")
		assert.Zero(t, time.Since(start), "skipped at once")
		assert.EqualValues(t, 2, h.publishes.Load(), "skipped publishes do not reach the broker")
		assert.Zero(t, h.pings.Load())

		// Probes after 1 s, then 2 s, 4 s, 5 s, 5 s: one ping each; the
		// calls before, and the one that starts it, are skipped.
		for i, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
			time.Sleep(backoff - time.Millisecond)
			assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("early")), pubsub.ErrBrokerDown, "before %s", backoff)
			synctest.Wait()
			assert.EqualValues(t, i, h.pings.Load(), "no probe before %s", backoff)
			time.Sleep(time.Millisecond)
			assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("skipped")), pubsub.ErrBrokerDown, "after %s", backoff)
			synctest.Wait()
			assert.EqualValues(t, i+1, h.pings.Load(), "the probe after %s", backoff)
			assert.True(t, br.Down())
		}
		assert.EqualValues(t, 2, h.publishes.Load())

		h.SetDown(false)
		sub, err = br.Subscribe(t.Context(), "t")
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("starts the probe")), pubsub.ErrBrokerDown)
		synctest.Wait()
		assert.False(t, br.Down(), "the probe closed the circuit")
		require.NoError(t, br.Publish(t.Context(), "t", []byte("back")))
		require.NoError(t, br.Ping(t.Context()))
		assert.Equal(t, "back", string(<-sub.C()))
		assert.Equal(t, []bool{true, false}, changes(), "opened once, closed once")

		// A new outage starts again from 1 s.
		h.SetDown(true)
		assert.Error(t, br.Publish(t.Context(), "t", []byte("x")))
		pings := h.pings.Load()
		time.Sleep(time.Second)
		assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("skipped")), pubsub.ErrBrokerDown)
		synctest.Wait()
		assert.Equal(t, pings+1, h.pings.Load())
	})
}

// TestBreakerBoundsAHangingBroker: a publish the broker never answers
// returns after the timeout (250 ms) and opens the circuit; what follows is
// skipped at once, also while the probe waits on the broker: one probe at a
// time, cut off at the timeout too.
func TestBreakerBoundsAHangingBroker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHanging()
		defer close(h.release) // the hung calls end with the bubble
		br, _ := breakerOn(t, h)
		h.hang.Store(true)

		start := time.Now()
		err := br.Publish(t.Context(), "t", []byte("a"))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 250*time.Millisecond, time.Since(start), "the timeout, not the broker, decides")
		assert.True(t, br.Down())

		time.Sleep(time.Second)
		start = time.Now()
		for range 100 {
			assert.ErrorIs(t, br.Publish(t.Context(), "t", []byte("b")), pubsub.ErrBrokerDown)
			assert.ErrorIs(t, br.Ping(t.Context()), pubsub.ErrBrokerDown)
		}
		assert.Zero(t, time.Since(start), "no caller waits for the probe")
		synctest.Wait() // the probe waits on the broker
		assert.EqualValues(t, 1, h.publishes.Load())
		assert.EqualValues(t, 1, h.pings.Load(), "one probe at a time")
		time.Sleep(250 * time.Millisecond)
		synctest.Wait()
		assert.True(t, br.Down(), "the probe timed out")

		// The next probe, 2 s later, finds the broker answering again.
		h.hang.Store(false)
		time.Sleep(2 * time.Second)
		assert.ErrorIs(t, br.Ping(t.Context()), pubsub.ErrBrokerDown, "a ping starts a probe too")
		synctest.Wait()
		assert.False(t, br.Down())
		require.NoError(t, br.Ping(t.Context()))
	})
}

// TestBreakerIgnoresCancelledCallers: a caller that gives up is no
// failure of the broker.
func TestBreakerIgnoresCancelledCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHanging()
		defer close(h.release)
		br, changes := breakerOn(t, h)
		h.hang.Store(true)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		assert.ErrorIs(t, br.Publish(ctx, "t", []byte("a")), context.Canceled)
		assert.False(t, br.Down())
		assert.Empty(t, changes())
	})
}

// TestBreakerGuardsOtherCalls: Do puts other calls to the same dependency
// (the shared rate limits on the broker's Redis) under the circuit: a hung
// one is cut at the timeout, and while the circuit is open none is made.
func TestBreakerGuardsOtherCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		br, _ := breakerOn(t, mempubsub.New(0))
		release := make(chan struct{})
		defer close(release)
		var calls atomic.Int64
		hung := func(ctx context.Context) error { calls.Add(1); <-release; return nil }
		start := time.Now()
		assert.ErrorIs(t, br.Do(t.Context(), hung), context.DeadlineExceeded)
		assert.Equal(t, 250*time.Millisecond, time.Since(start))
		start = time.Now()
		for range 100 {
			assert.ErrorIs(t, br.Do(t.Context(), hung), pubsub.ErrBrokerDown)
		}
		assert.Zero(t, time.Since(start), "no wait while the circuit is open")
		assert.EqualValues(t, 1, calls.Load())
		assert.ErrorIs(t, br.Publish(t.Context(), "t", nil), pubsub.ErrBrokerDown, "one circuit for the broker and the other calls")

		time.Sleep(time.Second)
		assert.ErrorIs(t, br.Do(t.Context(), hung), pubsub.ErrBrokerDown, "starts the probe")
		synctest.Wait()
		assert.False(t, br.Down(), "the broker answers the probe")
		require.NoError(t, br.Do(t.Context(), func(context.Context) error { return nil }))
		assert.EqualValues(t, 1, calls.Load())
	})
}

// replica is one process's Breaker on a broker shared with others, its
// own switch to cut it off, and a latest-value follower of topic "kpi"
// that counts its catch-ups.
type replica struct {
	out    *pubsubtest.Outage
	br     *pubsub.Breaker
	mu     sync.Mutex
	missed int
	dur    *pubsub.Subscription // a durable stream's subscription, which Resync leaves alone
}

func startReplica(t *testing.T, shared pubsub.Broker, guard *panics.Guard) *replica {
	r := &replica{out: pubsubtest.NewOutage(shared)}
	r.br = pubsub.NewBreaker(r.out, pubsub.BreakerOptions{Resync: func(topic string) bool { return topic != "statuses" }, Panics: guard})
	sub, err := r.br.Subscribe(t.Context(), "kpi")
	require.NoError(t, err)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pubsub.Follower{Broker: r.br, Topic: "kpi", Apply: func([]byte) {},
			Missed: func() { r.mu.Lock(); r.missed++; r.mu.Unlock() }}.Run(t.Context(), sub, done)
	}()
	r.dur, err = r.br.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)
	t.Cleanup(func() {
		close(done)
		<-finished
		_ = r.br.Close()
	})
	return r
}

func (r *replica) catchUps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.missed
}

// TestBreakerResyncsEveryReplicaAfterLostAnnouncements: announcements one
// replica skipped are lost to the others too; when its circuit closes, every
// replica's latest-value followers catch up (once), while durable streams'
// subscriptions, which poll anyway, are left alone. An outage that lost no
// announcement causes no catch-up.
func TestBreakerResyncsEveryReplicaAfterLostAnnouncements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shared := mempubsub.New(0)
		a, b := startReplica(t, shared, nil), startReplica(t, shared, nil)
		synctest.Wait()

		a.out.SetDown(true)
		assert.Error(t, a.br.Publish(t.Context(), "kpi", []byte("finance")))
		assert.ErrorIs(t, a.br.Publish(t.Context(), "kpi", []byte("hr")), pubsub.ErrBrokerDown)
		a.out.SetDown(false)
		time.Sleep(time.Second)
		assert.ErrorIs(t, a.br.Publish(t.Context(), "kpi", []byte("reports")), pubsub.ErrBrokerDown, "starts the probe")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.False(t, a.br.Down())
		assert.Equal(t, 1, b.catchUps(), "the other replica caught up")
		assert.GreaterOrEqual(t, a.catchUps(), 1, "and this one (its subscriptions were cut off too)")
		select {
		case <-b.dur.Done():
			t.Fatal("a durable stream's subscription was ended")
		default:
		}

		// Down and back without losing an announcement: no catch-up.
		aBefore := a.catchUps()
		a.out.SetDown(true)
		assert.Error(t, a.br.Ping(t.Context()))
		a.out.SetDown(false)
		time.Sleep(time.Second)
		assert.ErrorIs(t, a.br.Ping(t.Context()), pubsub.ErrBrokerDown, "starts the probe")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.False(t, a.br.Down())
		assert.Equal(t, 1, b.catchUps())
		assert.Equal(t, aBefore+1, a.catchUps(), "only the catch-up of its own outage (its subscription was dropped)")
	})
}

// TestBreakerResyncsAfterAPanicLostOne: a replica whose resync follower
// panics on a resync subscribes again after the panic's back-off (1 s) and
// then has its latest-value followers catch up all the same: the resync is
// not lost.
func TestBreakerResyncsAfterAPanicLostOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		guard, counted := countingGuard()
		var once sync.Once
		guard.Inject = func(where string) {
			if where == "broker.resync" {
				once.Do(func() { panic("injected") })
			}
		}
		shared := mempubsub.New(0)
		a, b := startReplica(t, shared, nil), startReplica(t, shared, guard)
		synctest.Wait()

		a.out.SetDown(true)
		assert.Error(t, a.br.Publish(t.Context(), "kpi", []byte("finance")), "an announcement lost")
		a.out.SetDown(false)
		time.Sleep(time.Second)
		assert.ErrorIs(t, a.br.Ping(t.Context()), pubsub.ErrBrokerDown, "starts the probe")
		synctest.Wait()
		require.False(t, a.br.Down())
		assert.Zero(t, b.catchUps(), "the resync panicked on the other replica")
		assert.Equal(t, map[string]int{"broker.resync": 1}, counted())
		time.Sleep(time.Second + 100*time.Millisecond) // the back-off, and the kpi follower's 50 ms
		synctest.Wait()
		assert.Equal(t, 1, b.catchUps(), "caught up after the back-off")
	})
}

// TestAnnouncementLevel: a publish the breaker skipped is logged at debug
// (the breaker logged the outage once); any other failure at warn.
func TestAnnouncementLevel(t *testing.T) {
	assert.Equal(t, slog.LevelDebug, pubsub.AnnouncementLevel(fmt.Errorf("publish: %w", pubsub.ErrBrokerDown)))
	assert.Equal(t, slog.LevelWarn, pubsub.AnnouncementLevel(errors.New("redis: connection refused")))
}
