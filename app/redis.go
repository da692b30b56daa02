package app

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/pubsub/redispubsub"
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
// shared rate limits, and the prefix that keeps this deployment's channels
// and keys apart from others on the same Redis. openBroker opens it; it
// closes after the broker and the services that use it.
type redisConn struct {
	client *redis.Client
	prefix string
}

// openRedis returns a client of the Redis at url ("redis://host:6379/0", or
// "rediss://" for TLS). It does not wait for Redis to answer. A failed
// command is retried once, on another connection, and then reported: the
// callers fall back (to the database, to local rate limits) rather than
// wait.
//
// go-redis logs dial failures through one process-wide logger, with no
// per-client option; openRedis silences it, since every failure reaches the
// caller as an error and readiness reports the outage. Setting it is atomic
// and idempotent, so each call may do it.
func openRedis(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.PoolSize = redisPoolSize
	opts.MaxRetries = 1
	opts.DialTimeout = redisTimeout
	opts.ReadTimeout = redisTimeout
	opts.WriteTimeout = redisTimeout
	redis.SetLogger(quietRedis{})
	return redis.NewClient(opts), nil
}

// openRedisBroker opens a client of the Redis at url and the broker on it
// for db's deployment: channels and keys are named after the database's
// identity, so the replicas of one deployment meet and other deployments
// on the same Redis stay apart. Close the broker, then the client.
func openRedisBroker(ctx context.Context, url string, db *store.DB) (*redispubsub.Broker, *redisConn, error) {
	id, err := db.DeploymentID(ctx)
	if err != nil {
		return nil, nil, err
	}
	client, err := openRedis(url)
	if err != nil {
		return nil, nil, err
	}
	rc := &redisConn{client: client, prefix: "switchboard:" + id + ":"}
	return redispubsub.New(client, redispubsub.Options{Prefix: rc.prefix}), rc, nil
}

// quietRedis drops go-redis's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
