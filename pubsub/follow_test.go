package pubsub_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
)

var (
	errRefused = errors.New("refused")
	errDropped = errors.New("dropped")
)

// flaky is a broker that refuses the next refuse subscriptions, ends the
// next flap ones as soon as it gives them, and remembers when each attempt
// came.
type flaky struct {
	*mempubsub.Broker
	mu       sync.Mutex
	refuse   int
	flap     int
	attempts []time.Time
	last     *pubsub.Subscription
}

func (b *flaky) Subscribe(ctx context.Context, topic string) (*pubsub.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts = append(b.attempts, time.Now())
	if b.refuse > 0 {
		b.refuse--
		return nil, errRefused
	}
	sub, err := b.Broker.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	b.last = sub
	if b.flap > 0 {
		b.flap--
		sub.End(errDropped)
	}
	return sub, nil
}

// drop ends the current subscription, and refuses or flaps the next ones.
func (b *flaky) drop(refuse, flap int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse, b.flap = refuse, flap
	b.last.End(errDropped)
}

// waits returns how long each attempt after since came after the one
// before it (the first: after since).
func (b *flaky) waits(since time.Time) []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Duration
	for _, at := range b.attempts {
		if at.After(since) {
			out = append(out, at.Sub(since))
			since = at
		}
	}
	return out
}

func (b *flaky) tries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.attempts)
}

// following is a Follower running in a synctest bubble, and what it did.
type following struct {
	broker   *flaky
	done     chan struct{}
	finished chan struct{}

	mu      sync.Mutex
	applied []string
	missed  int
	failed  []error
	polls   int
}

// follow runs a Follower of topic "t" on a broker that takes the first
// subscription, or refuses it when refused; configure, if any, changes the
// Follower first.
func follow(t *testing.T, refused bool, poll time.Duration, configure ...func(*pubsub.Follower)) *following {
	t.Helper()
	f := &following{broker: &flaky{Broker: mempubsub.New(0)}, done: make(chan struct{}), finished: make(chan struct{})}
	sub, err := f.broker.Subscribe(t.Context(), "t")
	require.NoError(t, err)
	if refused {
		sub.Close()
		sub = nil
	}
	fw := pubsub.Follower{
		Broker: f.broker,
		Topic:  "t",
		Apply:  func(p []byte) { f.mu.Lock(); f.applied = append(f.applied, string(p)); f.mu.Unlock() },
		Missed: func() { f.mu.Lock(); f.missed++; f.mu.Unlock() },
		Failed: func(err error) { f.mu.Lock(); f.failed = append(f.failed, err); f.mu.Unlock() },
	}
	if poll > 0 {
		fw.Poll, fw.PollInterval = func() { f.mu.Lock(); f.polls++; f.mu.Unlock() }, poll
	}
	for _, c := range configure {
		c(&fw)
	}
	go func() {
		defer close(f.finished)
		fw.Run(t.Context(), sub, f.done)
	}()
	synctest.Wait()
	return f
}

// stop closes done, checks that Run returned, and closes the broker.
func (f *following) stop(t *testing.T) {
	t.Helper()
	close(f.done)
	synctest.Wait()
	select {
	case <-f.finished:
	default:
		t.Fatal("Run did not return when done closed")
	}
	require.NoError(t, f.broker.Close())
}

func (f *following) publish(t *testing.T, payload string) {
	t.Helper()
	require.NoError(t, f.broker.Publish(t.Context(), "t", []byte(payload)))
	synctest.Wait()
}

// state returns what was applied, how often missed ran, and the failures.
func (f *following) state() ([]string, int, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...), f.missed, append([]error(nil), f.failed...)
}

// TestFollowerResubscribesWithBackoff: a dropped subscription is taken
// again after attempts spaced 50 ms, 100 ms, 200 ms… apart, missed runs
// once it is, and payloads flow again; done ends it all.
func TestFollowerResubscribesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := follow(t, false, 0)
		f.publish(t, "a")

		dropped := time.Now()
		f.broker.drop(3, 0)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms}, f.broker.waits(dropped),
			"three refusals, then the subscription")
		f.publish(t, "b")
		applied, missed, failed := f.state()
		assert.Equal(t, []string{"a", "b"}, applied)
		assert.Equal(t, 1, missed, "missed runs once, after the subscription is back")
		assert.Equal(t, []error{errDropped, errRefused, errRefused, errRefused}, failed)

		tries := f.broker.tries()
		f.stop(t)
		time.Sleep(time.Minute)
		assert.Equal(t, tries, f.broker.tries(), "no attempt after done closed")
	})
}

const ms = time.Millisecond

// TestFollowerStartsWithoutSubscription: refused at start, the follower
// subscribes itself and calls missed, as after a drop.
func TestFollowerStartsWithoutSubscription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := follow(t, true, 0)
		start := time.Now()
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []time.Duration{50 * ms}, f.broker.waits(start))
		f.publish(t, "a")
		applied, missed, failed := f.state()
		assert.Equal(t, []string{"a"}, applied)
		assert.Equal(t, 1, missed)
		assert.Empty(t, failed)
		f.stop(t)
	})
}

// TestFollowerBackoffGrowsWhileFlappingAndResetsWhenHealthy: a broker that
// drops each subscription as soon as it is taken is retried ever more
// slowly, up to 5 s; after a subscription that lasted, a drop is retried
// after 50 ms again.
func TestFollowerBackoffGrowsWhileFlappingAndResetsWhenHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := follow(t, false, 0)
		dropped := time.Now()
		f.broker.drop(0, 8)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms},
			f.broker.waits(dropped), "eight subscriptions dropped at once, then one that holds")
		_, missed, _ := f.state()
		assert.Equal(t, 9, missed, "after every subscription taken")

		dropped = time.Now() // the last one has lasted since
		f.broker.drop(0, 0)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, []time.Duration{50 * ms}, f.broker.waits(dropped))
		f.stop(t)
	})
}

// TestFollowerPollsWhileUnsubscribed: Poll runs at its interval whether the
// follower is subscribed or not, and does not hasten the retries.
func TestFollowerPollsWhileUnsubscribed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := follow(t, false, time.Second)
		dropped := time.Now()
		f.broker.drop(1000, 0)
		time.Sleep(30*time.Second + 500*ms)
		synctest.Wait()
		f.mu.Lock()
		polls := f.polls
		f.mu.Unlock()
		assert.Equal(t, 30, polls)
		assert.Equal(t, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms, 5000 * ms},
			f.broker.waits(dropped))
		f.stop(t)
	})
}

// TestFollowerEndsWithContext: Run returns when its context ends, even
// while it waits to retry.
func TestFollowerEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		b := &flaky{Broker: mempubsub.New(0), refuse: 1000}
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			pubsub.Follower{Broker: b, Topic: "t", Apply: func([]byte) {}}.Run(ctx, nil, nil)
		}()
		time.Sleep(time.Second)
		cancel()
		synctest.Wait()
		select {
		case <-finished:
		default:
			t.Fatal("Run did not return when ctx ended")
		}
		require.NoError(t, b.Close())
	})
}

// TestBackoff: 50 ms doubling to 5 s; Reset starts over.
func TestBackoff(t *testing.T) {
	var b pubsub.Backoff
	var got []time.Duration
	for range 9 {
		got = append(got, b.Next())
	}
	assert.Equal(t, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}, got)
	b.Reset()
	assert.Equal(t, 50*ms, b.Next())
}

// TestFollowerRestartsAfterAPanic: a payload whose handling panics is
// reported once under the Follower's Where; the follower drops its
// subscription, subscribes again after 1 s (2 s after a second panic in a
// row), catches up with Missed, and applies payloads again.
func TestFollowerRestartsAfterAPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		guard, counted := countingGuard()
		f := follow(t, false, 0, func(fw *pubsub.Follower) {
			apply := fw.Apply
			fw.Apply = func(p []byte) {
				if string(p) == "boom" {
					panic("bad payload")
				}
				apply(p)
			}
			fw.Panics, fw.Where = guard, "test.follower"
		})
		f.publish(t, "a")
		start := time.Now()
		f.publish(t, "boom")
		f.publish(t, "while away") // not subscribed: Missed is what catches up
		time.Sleep(time.Second)
		synctest.Wait()
		f.publish(t, "b")
		f.publish(t, "boom")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		f.publish(t, "c")

		applied, missed, _ := f.state()
		assert.Equal(t, []string{"a", "b", "c"}, applied)
		assert.Equal(t, 2, missed, "a catch-up after each restart")
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, f.broker.waits(start), "back-offs of 1 s, then 2 s")
		assert.Equal(t, map[string]int{"test.follower": 2}, counted())
		f.stop(t)
	})
}

// countingGuard returns a Guard that logs nowhere and counts the panics it
// recovers, and a function that returns the counts by where.
func countingGuard() (*panics.Guard, func() map[string]int) {
	var mu sync.Mutex
	counts := map[string]int{}
	guard := &panics.Guard{
		Log:   slog.New(slog.DiscardHandler),
		Count: func(where string) { mu.Lock(); counts[where]++; mu.Unlock() },
	}
	return guard, func() map[string]int { mu.Lock(); defer mu.Unlock(); return maps.Clone(counts) }
}
