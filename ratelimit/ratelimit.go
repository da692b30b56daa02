// Package ratelimit holds the token buckets behind Switchboard's rate
// limits: per WebSocket connection (operations per second) and per user
// (messages, typing events, statuses). A bucket refills at a steady rate up
// to a burst, so short bursts pass and sustained floods are refused.
package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is a rate and a burst. A zero Limit allows everything.
type Limit struct {
	PerSecond float64
	Burst     int
}

// Off reports whether the limit allows everything.
func (l Limit) Off() bool { return l.PerSecond <= 0 }

// Bucket is one token bucket; the zero value is a full bucket.
type Bucket struct {
	tokens  float64
	last    time.Time
	started bool
}

// Allow takes a token at now if one is left under l.
func (b *Bucket) Allow(l Limit, now time.Time) bool {
	if l.Off() {
		return true
	}
	if !b.started {
		b.started, b.tokens, b.last = true, float64(l.Burst), now
	}
	b.tokens = min(float64(l.Burst), b.tokens+now.Sub(b.last).Seconds()*l.PerSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Keyed is a set of buckets, one per key (a user id), under one limit.
// Buckets idle long enough to be full again are dropped. With Share, the
// buckets are kept in a store all replicas use, and the local ones only
// stand in while that store fails.
type Keyed struct {
	limit Limit
	now   func() time.Time

	shared      Shared
	name        string
	sharedError func(error)

	mu      sync.Mutex
	buckets map[int64]*Bucket
	swept   time.Time
	refused atomic.Uint64
}

// Refused reports how many calls Allow refused.
func (k *Keyed) Refused() uint64 {
	if k == nil {
		return 0
	}
	return k.refused.Load()
}

// NewKeyed returns buckets under limit; now is the clock (time.Now when
// nil).
func NewKeyed(limit Limit, now func() time.Time) *Keyed {
	if now == nil {
		now = time.Now
	}
	return &Keyed{limit: limit, now: now, buckets: make(map[int64]*Bucket)}
}

// Shared keeps buckets outside the process (see redisrate), so that every
// replica draws on the same ones.
type Shared interface {
	// Allow takes a token from key's bucket under l, if one is left.
	Allow(ctx context.Context, key string, l Limit) (bool, error)
}

// sharedTimeout bounds one decision of a Shared store; past it, the local
// bucket decides.
const sharedTimeout = 250 * time.Millisecond

// Share makes k's buckets those of s, named name:<key>. When s fails (Redis
// unreachable), onError hears of it and the local bucket decides: a
// replica then limits on its own, never stalls a request.
func (k *Keyed) Share(s Shared, name string, onError func(error)) {
	k.shared, k.name, k.sharedError = s, name, onError
}

// Allow takes a token from key's bucket if one is left.
func (k *Keyed) Allow(ctx context.Context, key int64) bool {
	if k == nil || k.limit.Off() {
		return true
	}
	if k.shared != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
		ok, err := k.shared.Allow(ctx, k.name+":"+strconv.FormatInt(key, 10), k.limit)
		cancel()
		if err == nil {
			if !ok {
				k.refused.Add(1)
			}
			return ok
		}
		if k.sharedError != nil {
			k.sharedError(err)
		}
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if refill := time.Duration(float64(k.limit.Burst) / k.limit.PerSecond * float64(time.Second)); now.Sub(k.swept) > refill {
		for key, b := range k.buckets {
			if now.Sub(b.last) > refill {
				delete(k.buckets, key)
			}
		}
		k.swept = now
	}
	b := k.buckets[key]
	if b == nil {
		b = &Bucket{}
		k.buckets[key] = b
	}
	if !b.Allow(k.limit, now) {
		k.refused.Add(1)
		return false
	}
	return true
}
