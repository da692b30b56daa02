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
	mu      sync.Mutex
	v       T
	version int64 // v's version (see SetVersion), 0 for none
	has     bool
	signal  chan struct{}
	out     chan T
}

// NewLatest returns a stream with nothing to read yet.
func NewLatest[T any]() *Latest[T] {
	return &Latest[T]{signal: make(chan struct{}, 1), out: make(chan T)}
}

// Set makes v the value to deliver next, replacing one not yet delivered.
func (l *Latest[T]) Set(v T) { l.SetVersion(v, 0) }

// SetVersion is Set for a value of a versioned source: version (positive,
// higher for newer values of the same source) is reported to the version
// recorder of Run's context (see WithVersionRecorder) just before v is
// handed out.
func (l *Latest[T]) SetVersion(v T, version int64) {
	l.mu.Lock()
	l.v, l.version, l.has = v, version, true
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

func (l *Latest[T]) take() (T, int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, version, ok := l.v, l.version, l.has
	var zero T
	l.v, l.version, l.has = zero, 0, false
	return v, version, ok
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
	record := VersionRecorder(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.signal:
		}
		v, version, ok := l.take()
		if !ok {
			continue
		}
		if point != nil {
			point()
		}
		if record != nil && version > 0 {
			record(version)
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

type versionRecorderKey struct{}

// WithVersionRecorder returns ctx under which a latest-value stream started
// with it (Latest.Run) reports the version of each value it hands out:
// sent(version) just before handing it over, for values set with
// SetVersion. A reader that turns each value into exactly one result (a
// GraphQL subscription) thus learns which version each result shows; the
// WebSocket layer uses it to share one execution of each new value between
// all the subscribers of the same selection. Values without a version are
// not reported.
func WithVersionRecorder(ctx context.Context, sent func(version int64)) context.Context {
	return context.WithValue(ctx, versionRecorderKey{}, sent)
}

// VersionRecorder returns the version recorder of ctx (WithVersionRecorder),
// or nil, for a latest-value stream that does not run on a Latest.
func VersionRecorder(ctx context.Context) func(version int64) {
	record, _ := ctx.Value(versionRecorderKey{}).(func(int64))
	return record
}
