package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/store"
)

// redisPoolSize bounds the connections the Redis client keeps for commands
// (publishes and rate-limit checks); the broker's channel subscriptions use
// one more of their own.
const redisPoolSize = 8

// redisTimeout bounds dialing Redis and each read and write, so that an
// outage fails requests promptly instead of stalling them.
const redisTimeout = 2 * time.Second

// redisConn is the process's one Redis client, shared by the broker and the
// shared rate limits, the prefix that keeps this deployment's channels and
// keys apart from others on the same Redis, and the circuit breaker that
// both go through. openBroker opens it; it closes after the broker and the
// services that use it.
type redisConn struct {
	client  redis.UniversalClient
	prefix  string
	breaker *pubsub.Breaker
}

// openRedis returns a client of the Redis that url names:
//
//	redis://host:6379/0                                  one Redis (rediss:// for TLS)
//	redis://s1:26379/0?master_name=NAME&addr=s2:26379    the master that the Sentinels at s1, s2, … name NAME
//	redis://n1:6379?addr=n2:6379&addr=n3:6379            a Redis Cluster, from these seed nodes
//	redis://n1:6379?cluster=true                         a Redis Cluster, from one seed node
//
// (user and password in the URL's user part, as usual; go-redis reads the
// other query parameters). It does not wait for Redis to answer. A failed
// command is retried once, on another connection, and then reported: the
// callers fall back (to the database, to local rate limits) rather than
// wait.
//
// go-redis logs dial failures through one process-wide logger, with no
// per-client option; openRedis silences it, since every failure reaches the
// caller as an error and readiness reports the outage. Setting it is atomic
// and idempotent, so each call may do it.
func openRedis(rawURL string) (redis.UniversalClient, error) {
	redis.SetLogger(quietRedis{})
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", errors.Unwrap(err))
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL (Sentinel): %w", err)
		}
		opts.PoolSize, opts.MaxRetries = redisPoolSize, 1
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
		opts.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(opts), nil
	case q.Has("addr") || q.Get("cluster") == "true":
		q.Del("cluster")
		u.RawQuery = q.Encode()
		opts, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL (Cluster): %w", err)
		}
		opts.PoolSize, opts.MaxRetries = redisPoolSize, 1 // the pool is per node
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
		opts.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.PoolSize = redisPoolSize
	opts.MaxRetries = 1
	opts.DialTimeout = redisTimeout
	opts.ReadTimeout = redisTimeout
	opts.WriteTimeout = redisTimeout
	// Heed the callers' deadlines (the breaker's 250 ms, a rate-limit
	// decision's), which go-redis ignores by default.
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// openRedisBroker opens a client of the Redis at url and the broker on it
// for db's deployment: channels and keys are named after the database's
// identity, so the replicas of one deployment meet and other deployments
// on the same Redis stay apart. Close the broker, then the client. guard
// recovers the panics of the broker's goroutines (nil: slog.Default).
func openRedisBroker(ctx context.Context, url string, db *store.DB, guard *panics.Guard) (*redispubsub.Broker, *redisConn, error) {
	id, err := db.DeploymentID(ctx)
	if err != nil {
		return nil, nil, err
	}
	client, err := openRedis(url)
	if err != nil {
		return nil, nil, err
	}
	rc := &redisConn{client: client, prefix: "switchboard:" + id + ":"}
	return redispubsub.New(client, redispubsub.Options{Prefix: rc.prefix, Panics: guard}), rc, nil
}

// newBreaker puts b behind the circuit breaker that the whole process's
// use of Redis goes through, logging when it opens and closes. Resyncs
// (pubsub.ErrResync) end the followers of latest-value topics only: the
// durable streams' hubs poll the database every second anyway.
func (s *Server) newBreaker(b pubsub.Broker) *pubsub.Breaker {
	return pubsub.NewBreaker(b, pubsub.BreakerOptions{
		Changed: func(down bool, err error) {
			if down {
				s.log.Warn("broker down: publishes skipped, subscribers served from the database, until a probe succeeds", "err", err)
			} else {
				s.log.Info("broker back: publishing through it again")
			}
		},
		Resync: func(topic string) bool { return !durableTopic(topic) },
		Panics: s.panics,
	})
}

// durableTopic reports whether topic is a durable stream's (see package
// stream).
func durableTopic(topic string) bool {
	_, room := models.RoomOfStream(topic)
	return room || topic == models.StatusStream || topic == models.NotificationStream
}

// guardedShared is a shared rate-limit store under the broker's circuit:
// while Redis is known to be down, Take answers pubsub.ErrBrokerDown at
// once (the caller limits locally), and a Take that hangs opens the
// circuit.
type guardedShared struct {
	breaker *pubsub.Breaker
	store   ratelimit.Shared
}

// Take takes a token from key's shared bucket under the circuit.
func (g guardedShared) Take(ctx context.Context, key string, l ratelimit.Limit) (bool, time.Duration, error) {
	type decision struct {
		ok   bool
		wait time.Duration
	}
	// Buffered: a Take cut off by the timeout still answers, to no one.
	answer := make(chan decision, 1)
	err := g.breaker.Do(ctx, func(ctx context.Context) error {
		ok, wait, err := g.store.Take(ctx, key, l)
		answer <- decision{ok, wait}
		return err
	})
	if err != nil {
		return false, 0, err
	}
	d := <-answer // Do returned f's own nil: f has answered
	return d.ok, d.wait, nil
}

// quietRedis drops go-redis's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
