package redisrate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/ratelimit/redisrate"
)

// TestBucketsAreSharedThroughRedis: two stores on two connections (two
// replicas) draw on one bucket per key, which refills at the limit's rate.
func TestBucketsAreSharedThroughRedis(t *testing.T) {
	url := redistest.URL(t)
	prefix := "redisrate-test:" + time.Now().Format(time.RFC3339Nano) + ":"
	var stores []*redisrate.Store
	for range 2 {
		stores = append(stores, redisrate.New(redistest.Client(t, url), prefix))
	}
	allow := func(s *redisrate.Store, key string, l ratelimit.Limit) bool {
		ok, wait, err := s.Take(t.Context(), key, l)
		require.NoError(t, err)
		if ok {
			assert.Zero(t, wait)
		} else {
			assert.Positive(t, wait, "a refusal says how long to wait")
			assert.LessOrEqual(t, wait, time.Duration(float64(time.Second)/l.PerSecond), "never longer than one token takes")
		}
		return ok
	}
	l := ratelimit.Limit{PerSecond: 10, Burst: 2}
	assert.True(t, allow(stores[0], "u1", l))
	assert.True(t, allow(stores[1], "u1", l))
	assert.False(t, allow(stores[0], "u1", l), "the burst is spent, on either replica")
	assert.False(t, allow(stores[1], "u1", l))
	assert.True(t, allow(stores[1], "u2", l), "another key has its own bucket")
	time.Sleep(150 * time.Millisecond) // 10/s: a token back
	assert.True(t, allow(stores[0], "u1", l), "refilled at the rate")
	assert.False(t, allow(stores[1], "u1", l))

	// Slow rates keep their value: one every 5 s is not rounded to zero.
	slow := ratelimit.Limit{PerSecond: 0.2, Burst: 1}
	assert.True(t, allow(stores[0], "slow", slow))
	assert.False(t, allow(stores[1], "slow", slow))
}
