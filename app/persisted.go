package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/pubsub"
)

// sharedPersisted is the automatic persisted queries' registry of a
// deployment with Redis: each replica keeps its own cache in front (local),
// and a document registered on one replica is known to every other, so a
// client whose hash-only request reaches another replica than the one it
// registered with is not asked for the document again. Redis is asked
// under the broker's circuit; while it cannot answer, the local cache
// answers alone, and a miss asks the client for the document, as the
// protocol provides: nothing fails for it.
type sharedPersisted struct {
	local   *byteLRU[string]
	client  *redis.Client
	prefix  string // the deployment's, then "apq:"
	breaker *pubsub.Breaker
	failed  func(err error) // counts a Redis failure (see startServices)
}

var _ graphql.Cache[string] = sharedPersisted{}

// persistedTTL is how long Redis keeps a registered document after its
// last registration: a client that sends a hash unknown by then sends its
// document again.
const persistedTTL = 24 * time.Hour

// Get returns the document of hash from the local cache, else from Redis
// (then kept locally). A document Redis holds under another hash than its
// own is not used.
func (p sharedPersisted) Get(ctx context.Context, hash string) (string, bool) {
	if q, ok := p.local.Get(ctx, hash); ok {
		return q, true
	}
	found := make(chan string, 1) // buffered: a read cut off by the circuit's timeout answers no one
	err := p.breaker.Do(ctx, func(ctx context.Context) error {
		q, err := p.client.Get(ctx, p.prefix+hash).Result()
		if errors.Is(err, redis.Nil) {
			found <- ""
			return nil
		}
		found <- q
		return err
	})
	if err != nil {
		p.failed(err)
		return "", false
	}
	q := <-found
	sum := sha256.Sum256([]byte(q))
	if q == "" || hex.EncodeToString(sum[:]) != hash {
		return "", false
	}
	p.local.Add(ctx, hash, q)
	return q, true
}

// Add registers query under hash (its SHA-256, checked by the caller) here
// and in Redis.
func (p sharedPersisted) Add(ctx context.Context, hash, query string) {
	p.local.Add(ctx, hash, query)
	if err := p.breaker.Do(ctx, func(ctx context.Context) error {
		return p.client.Set(ctx, p.prefix+hash, query, persistedTTL).Err()
	}); err != nil {
		p.failed(err)
	}
}
