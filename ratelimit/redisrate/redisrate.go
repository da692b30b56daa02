// Package redisrate keeps ratelimit's per-user buckets in Redis, so that
// every replica of a deployment draws on the same ones: a user whose
// connections land on three replicas still gets one budget, not three. The
// buckets are GCRA cells (github.com/go-redis/redis_rate: one Lua script per
// decision, on Redis's clock), which refill like ratelimit.Bucket.
package redisrate

import (
	"context"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/ratelimit"
)

// Store is a ratelimit.Shared on Redis.
type Store struct {
	limiter *redis_rate.Limiter
	prefix  string
}

var _ ratelimit.Shared = (*Store)(nil)

// New returns buckets kept through client under keys starting with prefix
// (the limiter adds "rate:" in front).
func New(client redis.UniversalClient, prefix string) *Store {
	return &Store{limiter: redis_rate.NewLimiter(client), prefix: prefix}
}

// Take takes a token from key's bucket under l, if one is left; when none
// is, it reports how long until one will be, by Redis's clock.
func (s *Store) Take(ctx context.Context, key string, l ratelimit.Limit) (bool, time.Duration, error) {
	res, err := s.limiter.Allow(ctx, s.prefix+key, limitOf(l))
	if err != nil {
		return false, 0, err
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}

// limitOf expresses l per minute, or per hour or per day for slower
// rates, so that rates below one per second (LIMIT_ROOMS is per hour) and
// fractional ones keep their value.
func limitOf(l ratelimit.Limit) redis_rate.Limit {
	period := time.Minute
	for _, p := range []time.Duration{time.Hour, 24 * time.Hour} {
		if l.PerSecond*period.Seconds() >= 1 {
			break
		}
		period = p
	}
	return redis_rate.Limit{
		Rate:   max(1, int(math.Round(l.PerSecond*period.Seconds()))),
		Burst:  max(1, l.Burst),
		Period: period,
	}
}
