package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
)

// sharedPersisted is the automatic persisted queries' registry of a
// deployment with Redis: each replica keeps its own cache in front (local),
// and a document registered on one replica is known to every other, so a
// client whose hash-only request reaches another replica than the one it
// registered with is not asked for the document again. Redis is asked
// under the broker's circuit; while it cannot answer, the local cache
// answers alone, and a miss asks the client for the document, as the
// protocol provides: nothing fails for it.
//
// A client controls what it registers: any document that parses and
// validates. So what Redis holds is bounded, whatever clients send: a
// document larger than sharedPersistedMax stays in the replica's own
// cache, each replica shares at most sharedRegistrations new documents,
// and Redis forgets each after persistedTTL. At most
// 20/s × 16 KiB × 300 s, about 98 MB, per replica.
type sharedPersisted struct {
	local   *byteLRU[string]
	client  redis.UniversalClient
	prefix  string // the deployment's, then "apq:"
	breaker *pubsub.Breaker
	failed  func(err error) // counts a Redis failure (see startServices)

	mu            sync.Mutex
	registrations ratelimit.Bucket // under sharedRegistrations
}

var _ graphql.Cache[string] = (*sharedPersisted)(nil)

// Bounds of what one replica shares through Redis (see sharedPersisted).
const (
	// persistedTTL is how long Redis keeps a registered document: a client
	// that sends its hash later, to a replica that does not know it,
	// sends its document again.
	persistedTTL = 5 * time.Minute
	// sharedPersistedMax is the largest document shared, in bytes.
	sharedPersistedMax = 16 << 10
)

// sharedRegistrations is how many documents a replica registers in Redis
// per second, in bursts of up to 100; past it, they stay local.
var sharedRegistrations = ratelimit.Limit{PerSecond: 20, Burst: 100}

// Get returns the document of hash from the local cache, else from Redis
// (then kept locally). A document Redis holds under another hash than its
// own is not used.
func (p *sharedPersisted) Get(ctx context.Context, hash string) (string, bool) {
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

// Add registers query under hash (its SHA-256, checked by the caller)
// here, and in Redis within the bounds above.
func (p *sharedPersisted) Add(ctx context.Context, hash, query string) {
	p.local.Add(ctx, hash, query)
	if len(query) > sharedPersistedMax {
		return
	}
	p.mu.Lock()
	ok := p.registrations.Allow(sharedRegistrations, time.Now())
	p.mu.Unlock()
	if !ok {
		return
	}
	if err := p.breaker.Do(ctx, func(ctx context.Context) error {
		return p.client.SetNX(ctx, p.prefix+hash, query, persistedTTL).Err()
	}); err != nil {
		p.failed(err)
	}
}
