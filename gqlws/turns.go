package gqlws

import (
	"context"
	"slices"
	"sync"
)

// turns lets large fan-outs run one at a time (see Transport.fanOut): in
// the order they asked, except that a fan-out of events (a durable stream's)
// goes before one of a latest value, or of an event that follows from
// others (Options.FollowingFields), waiting with it. A latest value is a
// state that the next one replaces, such as a count that an event has just
// moved: the event itself is what its reader waits for first, and a state
// that waits longer only skips intermediate values.
type turns struct {
	mu      sync.Mutex
	busy    bool
	waiting [2][]chan struct{} // by class: events, then latest values; oldest first
	passed  int                // event turns given while a latest value waited
}

// maxPassed is how many event turns a waiting latest value lets go first:
// under a steady flow of events it still has every few turns.
const maxPassed = 4

// Classes of fan-out, in the order they go.
const (
	eventTurn = iota
	latestTurn
)

// acquire waits for a turn of class; it fails only when ctx ends first.
func (t *turns) acquire(ctx context.Context, class int) error {
	t.mu.Lock()
	if !t.busy {
		t.busy = true
		t.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	t.waiting[class] = append(t.waiting[class], ready)
	t.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	i := slices.Index(t.waiting[class], ready)
	if i >= 0 {
		t.waiting[class] = slices.Delete(t.waiting[class], i, i+1)
	}
	t.mu.Unlock()
	if i < 0 {
		t.release() // it was handed the turn meanwhile: pass it on
	}
	return ctx.Err()
}

// release ends a turn, handing it to the next waiter if there is one.
func (t *turns) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	class := eventTurn
	switch {
	case len(t.waiting[latestTurn]) == 0:
		t.passed = 0
	case len(t.waiting[eventTurn]) == 0 || t.passed >= maxPassed:
		class, t.passed = latestTurn, 0
	default:
		t.passed++
	}
	if q := t.waiting[class]; len(q) > 0 {
		close(q[0])
		t.waiting[class] = slices.Delete(q, 0, 1)
		return
	}
	t.busy = false
}
