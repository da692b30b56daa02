package redisrate

import (
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/ratelimit"
)

// TestLimitOf: a rate keeps its value in Redis, however slow: per minute,
// or per hour or per day below one a minute (or an hour).
func TestLimitOf(t *testing.T) {
	tests := []struct {
		name string
		in   ratelimit.Limit
		want redis_rate.Limit
	}{
		{name: "per second", in: ratelimit.Limit{PerSecond: 5, Burst: 10}, want: redis_rate.Limit{Rate: 300, Burst: 10, Period: time.Minute}},
		{name: "one every 5 s", in: ratelimit.Limit{PerSecond: 0.2, Burst: 1}, want: redis_rate.Limit{Rate: 12, Burst: 1, Period: time.Minute}},
		{name: "ten an hour", in: ratelimit.Limit{PerSecond: 10.0 / 3600, Burst: 10}, want: redis_rate.Limit{Rate: 10, Burst: 10, Period: time.Hour}},
		{name: "one an hour", in: ratelimit.Limit{PerSecond: 1.0 / 3600, Burst: 1}, want: redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Hour}},
		{name: "half an hour's worth", in: ratelimit.Limit{PerSecond: 0.5 / 3600, Burst: 1}, want: redis_rate.Limit{Rate: 12, Burst: 1, Period: 24 * time.Hour}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, limitOf(tt.in), tt.name)
	}
}
