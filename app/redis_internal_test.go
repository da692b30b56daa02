package app

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
)

// stuckStore is a shared rate-limit store that, while stuck, never
// answers until released; it counts the decisions asked of it.
type stuckStore struct {
	stuck   atomic.Bool
	release chan struct{}
	asked   atomic.Int64
}

func (s *stuckStore) Take(context.Context, string, ratelimit.Limit) (bool, time.Duration, error) {
	s.asked.Add(1)
	if s.stuck.Load() {
		<-s.release
	}
	return true, 0, nil
}

// TestSharedLimitsDoNotWaitWhileRedisIsDown: with the shared store hung,
// one decision waits the breaker's timeout and opens the circuit; the
// next ones are taken locally at once (without asking the store), under
// the same limit, and counted as skipped; the circuit closes once Redis
// answers a probe again.
func TestSharedLimitsDoNotWaitWhileRedisIsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		br := pubsub.NewBreaker(mempubsub.New(0), pubsub.BreakerOptions{})
		defer func() { _ = br.Close() }()
		store := &stuckStore{release: make(chan struct{})}
		defer close(store.release)
		var skipped, failed atomic.Int64
		k := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 1, Burst: 3}, nil)
		k.Share(guardedShared{br, store}, "messages", func(err error) {
			if errors.Is(err, pubsub.ErrBrokerDown) {
				skipped.Add(1)
			} else {
				failed.Add(1)
			}
		})
		assert.True(t, k.Allow(t.Context(), 1), "shared")
		assert.EqualValues(t, 1, store.asked.Load())

		store.stuck.Store(true)
		start := time.Now()
		assert.True(t, k.Allow(t.Context(), 1), "local, once the store timed out")
		assert.Equal(t, 250*time.Millisecond, time.Since(start))
		start = time.Now()
		assert.True(t, k.Allow(t.Context(), 1))
		assert.True(t, k.Allow(t.Context(), 1))
		assert.False(t, k.Allow(t.Context(), 1), "the local bucket keeps the limit")
		assert.Zero(t, time.Since(start), "no wait while the circuit is open")
		assert.EqualValues(t, 2, store.asked.Load(), "the store is not asked meanwhile")
		assert.EqualValues(t, 1, failed.Load())
		assert.EqualValues(t, 3, skipped.Load())

		store.stuck.Store(false)
		time.Sleep(time.Second)
		assert.True(t, k.Allow(t.Context(), 2), "local, and starts the probe")
		synctest.Wait()
		require.False(t, br.Down())
		assert.True(t, k.Allow(t.Context(), 2), "shared again")
		assert.EqualValues(t, 3, store.asked.Load())
	})
}
