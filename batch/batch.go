// Package batch gathers the loads that many goroutines make at nearly the
// same moment into one fetch, as a DataLoader does, for loads made outside
// any one request: the room-list watchers of every signed-in user, each
// re-reading the same room after a message.
//
// Unlike a request-scoped DataLoader, it keeps nothing: a fetch starts
// after every load it answers was asked for, so each answer is at least as
// fresh as the moment it was asked. Loaders that cache by key (dataloadgen,
// graph-gophers/dataloader) would serve a later load a value read before
// the change it is looking for.
package batch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/panics"
)

// Loader batches loads of V by key.
type Loader[K comparable, V any] struct {
	// Panics recovers a panic of a fetch: every load it was to answer gets
	// ErrPanicked. Set it before the first Load; nil logs to slog.Default.
	Panics *panics.Guard

	wait    time.Duration
	timeout time.Duration
	fetch   func(ctx context.Context, keys []K) (map[K]V, error)

	mu  sync.Mutex
	cur *call[K, V]
}

type call[K comparable, V any] struct {
	keys map[K]struct{}
	done chan struct{}
	vals map[K]V
	err  error
}

// New returns a loader that fetches the keys asked for within wait of the
// first one together, under a context of its own bounded by timeout (a
// fetch serves many callers: none of their contexts may end it). fetch
// leaves out the keys that have no value.
func New[K comparable, V any](wait, timeout time.Duration, fetch func(ctx context.Context, keys []K) (map[K]V, error)) *Loader[K, V] {
	return &Loader[K, V]{wait: wait, timeout: timeout, fetch: fetch}
}

// Load returns key's value (ok false when fetch had none), or fetch's error.
func (l *Loader[K, V]) Load(ctx context.Context, key K) (v V, ok bool, err error) {
	l.mu.Lock()
	c := l.cur
	if c == nil {
		c = &call[K, V]{keys: make(map[K]struct{}), done: make(chan struct{})}
		l.cur = c
		time.AfterFunc(l.wait, func() { l.run(c) })
	}
	c.keys[key] = struct{}{}
	l.mu.Unlock()
	select {
	case <-c.done:
		v, ok = c.vals[key]
		return v, ok, c.err
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

// ErrPanicked answers the loads of a fetch that panicked.
var ErrPanicked = errors.New("batch: fetch panicked")

// run closes the batch to new keys and fetches it.
func (l *Loader[K, V]) run(c *call[K, V]) {
	l.mu.Lock()
	l.cur = nil
	keys := make([]K, 0, len(c.keys))
	for k := range c.keys {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	c.err = ErrPanicked
	l.Panics.Do(ctx, "batch", func() { c.vals, c.err = l.fetch(ctx, keys) })
	close(c.done)
}
