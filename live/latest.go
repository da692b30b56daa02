// Package live holds the building block of latest-value streams (README.md,
// "The delivery promise"): presence lists, unread counts, KPI sets and dashboards. Each
// watcher receives the current value first and then every change, and a
// slow watcher skips intermediate values but never ends with a stale one.
package live

import (
	"context"
	"sync"
)

// Latest is one watcher's latest-value stream: Set replaces a value the
// reader has not taken yet, so the reader always ends with the newest one
// and the writer never waits.
type Latest[T any] struct {
	mu     sync.Mutex
	v      T
	has    bool
	signal chan struct{}
	out    chan T
}

// NewLatest returns a stream with nothing to read yet.
func NewLatest[T any]() *Latest[T] {
	return &Latest[T]{signal: make(chan struct{}, 1), out: make(chan T)}
}

// Set makes v the value to deliver next, replacing one not yet delivered.
func (l *Latest[T]) Set(v T) {
	l.mu.Lock()
	l.v, l.has = v, true
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

func (l *Latest[T]) take() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.v, l.has
	var zero T
	l.v, l.has = zero, false
	return v, ok
}

// Run hands values to the channel C returns until ctx ends, then calls done
// (if not nil) and closes the channel. Start it on a goroutine of its own.
func (l *Latest[T]) Run(ctx context.Context, done func()) {
	defer close(l.out)
	if done != nil {
		defer done()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.signal:
		}
		v, ok := l.take()
		if !ok {
			continue
		}
		select {
		case l.out <- v:
		case <-ctx.Done():
			return
		}
	}
}

// C is the channel of values.
func (l *Latest[T]) C() <-chan T { return l.out }
