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
	ok, _ := b.Take(l, now)
	return ok
}

// Take takes a token at now if one is left under l; when none is, it
// reports how long until one will be (always more than zero).
func (b *Bucket) Take(l Limit, now time.Time) (ok bool, wait time.Duration) {
	if l.Off() {
		return true, 0
	}
	if !b.started {
		b.started, b.tokens, b.last = true, float64(l.Burst), now
	}
	b.tokens = min(float64(l.Burst), b.tokens+now.Sub(b.last).Seconds()*l.PerSecond)
	b.last = now
	if b.tokens < 1 {
		return false, max(time.Nanosecond, time.Duration((1-b.tokens)/l.PerSecond*float64(time.Second)))
	}
	b.tokens--
	return true, 0
}

// Keyed is a set of buckets, one per key (a user id, a client address),
// under one limit.
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
	buckets map[string]*Bucket
	swept   time.Time
	refused atomic.Uint64
}

// Refused reports how many calls Allow and Take refused.
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
	return &Keyed{limit: limit, now: now, buckets: make(map[string]*Bucket)}
}

// Limit is the limit k's buckets are under.
func (k *Keyed) Limit() Limit {
	if k == nil {
		return Limit{}
	}
	return k.limit
}

// Shared keeps buckets outside the process (see redisrate), so that every
// replica draws on the same ones.
type Shared interface {
	// Take takes a token from key's bucket under l, if one is left; when
	// none is, it reports how long until one will be.
	Take(ctx context.Context, key string, l Limit) (ok bool, wait time.Duration, err error)
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

// Allow takes a token from the bucket of user id key if one is left.
func (k *Keyed) Allow(ctx context.Context, key int64) bool {
	ok, _ := k.Take(ctx, strconv.FormatInt(key, 10))
	return ok
}

// Take takes a token from key's bucket if one is left; when none is, it
// reports how long until one will be (more than zero), and counts the
// refusal. Keys of one Keyed are one kind of thing: user ids (see Allow)
// or, with a prefix of their own, other names.
func (k *Keyed) Take(ctx context.Context, key string) (ok bool, wait time.Duration) {
	if k == nil || k.limit.Off() {
		return true, 0
	}
	if k.shared != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
		ok, wait, err := k.shared.Take(ctx, k.name+":"+key, k.limit)
		cancel()
		if err == nil {
			if !ok {
				k.refused.Add(1)
				wait = max(wait, time.Nanosecond)
			}
			return ok, wait
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
	ok, wait = b.Take(k.limit, now)
	if !ok {
		k.refused.Add(1)
	}
	return ok, wait
}
