// Package live holds the building block of latest-value streams (README.md,
// "The delivery promise"): presence lists, unread counts, KPI sets and dashboards. Each
// watcher receives the current value first and then every change, and a
// slow watcher skips intermediate values but never ends with a stale one.
package live

import (
	"context"
	"sync"

	"github.com/switchboardhq/switchboard/panics"
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
func (l *Latest[T]) Run(ctx context.Context, done func()) { l.run(ctx, done, nil) }

// RunGuarded is Run, with a panic recovered by guard (reported under where)
// after done has run and the channel is closed: the watcher's stream ends.
// Each value handed out is the injection point where.
func (l *Latest[T]) RunGuarded(ctx context.Context, done func(), guard *panics.Guard, where string) {
	defer guard.Recover(ctx, where, nil)
	l.run(ctx, done, func() { guard.Point(where) })
}

// run is Run, calling point (if not nil) before handing out each value.
func (l *Latest[T]) run(ctx context.Context, done, point func()) {
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
		if point != nil {
			point()
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
