// Package panics contains the panics of the goroutines a server starts, so
// that a bug hit by one connection, operation or event ends only that: a
// Guard recovers the panic, logs it once (error level, with its stack and
// the request id of its context), counts it by where it happened, and lets
// the caller end what the panic broke (an operation, a connection) or go
// on with the next iteration of a loop (a follower, after a Backoff).
//
// A Guard also names the places where tests inject panics (Point): the
// server keeps serving whichever of them panics.
package panics

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Guard recovers the panics of one server's goroutines. A nil *Guard is
// ready to use: it recovers and logs to slog.Default, and counts nothing.
type Guard struct {
	// Log receives one error line per panic ("panic recovered", with where,
	// the panic's value and its stack). Default slog.Default.
	Log *slog.Logger
	// Count, if not nil, is called once per panic with where it happened
	// (the server's switchboard_panics_total{where}).
	Count func(where string)
	// Inject, if not nil, is called at every injection point with its name
	// (see Point), on the goroutine the point guards: a test makes it panic
	// there. For tests only: a server leaves it nil.
	Inject func(where string)
}

// Point is an injection point named where: it calls Inject, if set. Every
// Do is one; a goroutine guarded otherwise (Go, Recover) calls it where a
// panic would find what it must undo in place.
func (g *Guard) Point(where string) {
	if g != nil && g.Inject != nil {
		g.Inject(where)
	}
}

// Recover, deferred, recovers a panic of the goroutine: it reports it (see
// Report) under ctx and where, then calls then, if not nil, to end what the
// panic broke. Without a panic it does nothing. It must be deferred itself
// (defer g.Recover(...)), not called from a deferred function.
func (g *Guard) Recover(ctx context.Context, where string, then func()) {
	p := recover()
	if p == nil {
		return
	}
	g.Report(ctx, where, p)
	if then != nil {
		then()
	}
}

// Report logs a recovered panic p once, at error level with its stack and
// the request id ctx carries (the server's log handler adds it), and
// counts it under where.
func (g *Guard) Report(ctx context.Context, where string, p any) {
	log := slog.Default()
	if g != nil && g.Log != nil {
		log = g.Log
	}
	if ctx == nil {
		ctx = context.Background()
	}
	log.ErrorContext(ctx, "panic recovered", "where", where, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	if g != nil && g.Count != nil {
		g.Count(where)
	}
}

// Do runs fn as the injection point where, and reports whether it
// panicked; a panic is recovered and reported under ctx (see Recover).
func (g *Guard) Do(ctx context.Context, where string, fn func()) (panicked bool) {
	defer g.Recover(ctx, where, func() { panicked = true })
	g.Point(where)
	fn()
	return false
}

// Go runs fn on a goroutine of its own, recovering a panic as Recover
// does: it ends fn only. Unlike Do, Go is no injection point by itself: fn
// calls Point(where) where what it must undo is in place (its deferred
// closes), as a real panic would find it.
func (g *Guard) Go(ctx context.Context, where string, fn func()) {
	go func() {
		defer g.Recover(ctx, where, nil)
		fn()
	}()
}

// The waits of a loop that panicked, before its next iteration.
const (
	FirstBackoff = time.Second
	MaxBackoff   = 30 * time.Second
)

// Backoff spaces the restarts of a loop that panics: FirstBackoff before
// the first, twice as long before each next one, up to MaxBackoff. The zero
// value is ready to use; a Backoff is not safe for concurrent use.
type Backoff struct {
	next time.Duration
	last time.Time // when Next was last called
}

// Next returns how long to wait before restarting after a panic at now.
// The waits start again from FirstBackoff once the loop has run MaxBackoff
// without a panic.
func (b *Backoff) Next(now time.Time) time.Duration {
	if !b.last.IsZero() && now.Sub(b.last) > b.next+MaxBackoff {
		b.next = 0
	}
	b.last = now
	d := max(b.next, FirstBackoff)
	b.next = min(2*d, MaxBackoff)
	return d
}
