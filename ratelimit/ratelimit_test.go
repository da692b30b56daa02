package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/ratelimit"
)

func TestBucket(t *testing.T) {
	l := ratelimit.Limit{PerSecond: 2, Burst: 3}
	var b ratelimit.Bucket
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		assert.True(t, b.Allow(l, t0), "burst %d", i)
	}
	assert.False(t, b.Allow(l, t0), "burst spent")
	assert.False(t, b.Allow(l, t0.Add(400*time.Millisecond)), "0.8 token is not one")
	assert.True(t, b.Allow(l, t0.Add(500*time.Millisecond)), "one token per half second")
	assert.False(t, b.Allow(l, t0.Add(500*time.Millisecond)))
	assert.True(t, b.Allow(l, t0.Add(time.Hour)), "refilled")
	assert.True(t, b.Allow(l, t0.Add(time.Hour)))
	assert.True(t, b.Allow(l, t0.Add(time.Hour)))
	assert.False(t, b.Allow(l, t0.Add(time.Hour)), "but never beyond the burst")
	var off ratelimit.Bucket
	for range 1000 {
		assert.True(t, off.Allow(ratelimit.Limit{}, t0), "a zero limit allows everything")
	}
}

func TestKeyed(t *testing.T) {
	now := time.Unix(1000, 0)
	k := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 1, Burst: 2}, func() time.Time { return now })
	assert.True(t, k.Allow(t.Context(), 1))
	assert.True(t, k.Allow(t.Context(), 1))
	assert.False(t, k.Allow(t.Context(), 1), "user 1 spent their burst")
	assert.True(t, k.Allow(t.Context(), 2), "user 2 has their own")
	now = now.Add(time.Second)
	assert.True(t, k.Allow(t.Context(), 1), "refilled by the rate")
	assert.False(t, k.Allow(t.Context(), 1))
	var nilKeyed *ratelimit.Keyed
	assert.True(t, nilKeyed.Allow(t.Context(), 1), "no limiter, no limit")
}

// TestTakeSaysHowLongToWait: a refusal says when the next token comes,
// from the bucket's rate; string keys have buckets of their own.
func TestTakeSaysHowLongToWait(t *testing.T) {
	now := time.Unix(1000, 0)
	k := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 0.5, Burst: 2}, func() time.Time { return now })
	for range 2 {
		ok, wait := k.Take(t.Context(), "addr:192.0.2.1")
		assert.True(t, ok)
		assert.Zero(t, wait)
	}
	ok, wait := k.Take(t.Context(), "addr:192.0.2.1")
	assert.False(t, ok)
	assert.Equal(t, 2*time.Second, wait, "one token every 2 s")
	now = now.Add(1500 * time.Millisecond)
	_, wait = k.Take(t.Context(), "addr:192.0.2.1")
	assert.Equal(t, 500*time.Millisecond, wait, "three quarters of a token are there")
	ok, _ = k.Take(t.Context(), "addr:192.0.2.2")
	assert.True(t, ok, "another key has its own bucket")
	assert.EqualValues(t, 2, k.Refused())
	ok, _ = ratelimit.NewKeyed(ratelimit.Limit{}, nil).Take(t.Context(), "x")
	assert.True(t, ok, "a zero limit allows everything")
}

// failingStore is a shared store that cannot be reached.
type failingStore struct{ calls int }

func (f *failingStore) Take(context.Context, string, ratelimit.Limit) (bool, time.Duration, error) {
	f.calls++
	return false, 0, errors.New("connection refused")
}

// answeringStore decides by a fixed answer, and records the keys asked.
type answeringStore struct {
	allow bool
	wait  time.Duration
	keys  []string
}

func (s *answeringStore) Take(_ context.Context, key string, _ ratelimit.Limit) (bool, time.Duration, error) {
	s.keys = append(s.keys, key)
	return s.allow, s.wait, nil
}

// TestSharedBucketsDecideAndLocalOnesStandIn: a shared store's answer is
// final (and counted); when it fails, the local bucket decides and the
// failure is reported.
func TestSharedBucketsDecideAndLocalOnesStandIn(t *testing.T) {
	now := time.Unix(1000, 0)
	k := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 1, Burst: 1}, func() time.Time { return now })
	store := &answeringStore{wait: 3 * time.Second}
	k.Share(store, "messages", nil)
	assert.False(t, k.Allow(t.Context(), 7), "the shared store refuses")
	ok, wait := k.Take(t.Context(), "addr:192.0.2.1")
	assert.False(t, ok)
	assert.Equal(t, 3*time.Second, wait, "with the shared store's wait")
	assert.Equal(t, []string{"messages:7", "messages:addr:192.0.2.1"}, store.keys)
	assert.EqualValues(t, 2, k.Refused())

	var reported []error
	failing := &failingStore{}
	k.Share(failing, "messages", func(err error) { reported = append(reported, err) })
	assert.True(t, k.Allow(t.Context(), 7), "the local bucket stands in")
	assert.False(t, k.Allow(t.Context(), 7), "and limits")
	assert.Equal(t, 2, failing.calls)
	assert.Len(t, reported, 2)
}
