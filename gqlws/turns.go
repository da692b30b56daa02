package gqlws

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// turns lets large fan-outs run one turn at a time (see Transport.fanOut),
// and lets the fan-outs that waited for a turn share the next one: one
// event often feeds several groups whose members sit on the same
// connections (a broadcast's notification and the unread counts it moved;
// a message and the room lists it changed). A shared turn writes each
// connection's frames of all of them together, in one system call, where
// separate turns would write to every socket once per group: the write
// itself is most of a fan-out's cost.
//
// Within a shared turn a connection gets the frames of events (a durable
// stream's) before those of latest values and of events that follow from
// others (Options.FollowingFields): the event is what its reader waits for
// first. Nothing waits more than one turn.
//
// An event whose fan-out is followed by others (Options.Followers) holds
// its turn, for a few milliseconds at most, until one of those asks for a
// turn (see awaitFollowers): then each subscriber of both gets both frames
// in one write, instead of the event alone and the other a moment later.
type turns struct {
	mu      sync.Mutex
	busy    bool         // a turn runs
	waiting []*fanOutJob // fan-outs for the next turn, in the order they asked
	// queued is len(waiting), for the running turn to look at without the
	// lock (see adopt).
	queued atomic.Int32
	// awaited names the fields whose fan-outs the running turn waits for,
	// and arrived is closed when one asks for a turn; nil when it waits for
	// none. awaiting says which, without the lock.
	awaited  []string
	arrived  chan struct{}
	awaiting atomic.Bool
	// missed is set when a wait for followers ended without one, until a
	// follower's fan-out comes: meanwhile events do not wait. (A follower
	// that merges the changes of several events, as a room list does when
	// messages come faster than it is read, comes once for all of them.)
	missed atomic.Bool
}

// fanOutJob is one group's result for its members, waiting for a turn.
type fanOutJob struct {
	members []*operation
	result  queuedFrame
	class   int    // eventTurn or latestTurn
	field   string // the subscription field of its group
	// followers are the fields whose fan-outs may follow this one's, and
	// wait how long its turn waits for one (see Options.Followers).
	followers []string
	wait      time.Duration
	following bool // its group's field follows others' (see Options.Followers)

	lead chan []*fanOutJob // hands this job's goroutine a turn to run (this job among its fan-outs)
	done chan bool         // another's turn ran this job: whether every member got the result
}

// Classes of fan-out, in the order a connection gets their frames in a
// shared turn.
const (
	eventTurn = iota
	latestTurn
)

// take runs job in a turn, calling run with the fan-outs of the turn (the
// first caller of a turn runs it for all), and reports what run reported.
// run returns whether all went well and the fan-outs it adopted meanwhile
// (see adopt), which hear the same.
// A job whose ctx ends while it waits leaves the queue (nobody waits for
// its result); once in a turn, it runs.
func (t *turns) take(ctx context.Context, job *fanOutJob, run func([]*fanOutJob) (bool, []*fanOutJob)) bool {
	t.mu.Lock()
	if !t.busy {
		t.busy = true
		t.mu.Unlock()
		return t.lead(job, []*fanOutJob{job}, run)
	}
	job.lead, job.done = make(chan []*fanOutJob, 1), make(chan bool, 1)
	t.waiting = append(t.waiting, job)
	t.queued.Store(int32(len(t.waiting)))
	if t.arrived != nil && slices.Contains(t.awaited, job.field) {
		t.stopAwaiting()
	}
	t.mu.Unlock()
	select {
	case batch := <-job.lead:
		return t.lead(job, batch, run)
	case ok := <-job.done:
		return ok
	case <-ctx.Done():
	}
	t.mu.Lock()
	i := slices.Index(t.waiting, job)
	if i >= 0 {
		t.waiting = slices.Delete(t.waiting, i, i+1)
		t.queued.Store(int32(len(t.waiting)))
	}
	t.mu.Unlock()
	if i >= 0 {
		return true // the group is ending: nobody waits for this result
	}
	select { // a turn has it already
	case batch := <-job.lead:
		return t.lead(job, batch, run)
	case ok := <-job.done:
		return ok
	}
}

// lead runs the turn of batch on own's goroutine, tells the others of
// batch, and the fan-outs the turn adopted, how it went, and hands the next
// turn, to all that wait, to the first of them.
func (t *turns) lead(own *fanOutJob, batch []*fanOutJob, run func([]*fanOutJob) (bool, []*fanOutJob)) bool {
	ok := false
	var adopted []*fanOutJob
	defer func() {
		for _, j := range slices.Concat(batch, adopted) {
			if j != own {
				j.done <- ok
			}
		}
		t.mu.Lock()
		next := t.waiting
		t.waiting = nil
		t.queued.Store(0)
		t.busy = len(next) > 0
		t.mu.Unlock()
		if len(next) > 0 {
			next[0].lead <- next
		}
	}()
	slices.SortStableFunc(batch, func(a, b *fanOutJob) int { return cmp.Compare(a.class, b.class) })
	ok, adopted = run(batch)
	return ok
}

// adopt takes the fan-outs waiting for the next turn into the running one
// (whose lead then tells them how it went), when there are any.
func (t *turns) adopt() []*fanOutJob {
	if t.queued.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	jobs := t.waiting
	t.waiting = nil
	t.queued.Store(0)
	return jobs
}

// followersDue returns the fields whose fan-outs a turn of batch waits for,
// and how long at most: those that follow one of its events (see
// Options.Followers), unless one of them is in batch already.
func followersDue(batch []*fanOutJob) ([]string, time.Duration) {
	for _, job := range batch {
		if job.wait <= 0 {
			continue
		}
		if slices.ContainsFunc(batch, func(other *fanOutJob) bool { return slices.Contains(job.followers, other.field) }) {
			return nil, 0
		}
		return job.followers, job.wait
	}
	return nil, 0
}

// awaitFollowers holds the running turn until a fan-out of one of fields
// asks for a turn, for at most wait (or until ctx ends): at once when one
// waits already.
func (t *turns) awaitFollowers(ctx context.Context, fields []string, wait time.Duration) {
	t.mu.Lock()
	if slices.ContainsFunc(t.waiting, func(job *fanOutJob) bool { return slices.Contains(fields, job.field) }) {
		t.mu.Unlock()
		return
	}
	arrived := make(chan struct{})
	t.awaited, t.arrived = fields, arrived
	t.awaiting.Store(true)
	t.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-arrived:
		return
	case <-timer.C:
		t.missed.Store(true)
	case <-ctx.Done():
	}
	t.mu.Lock()
	if t.arrived == arrived {
		t.stopAwaiting()
	}
	t.mu.Unlock()
}

// stopAwaiting ends the running turn's wait for followers. Called with mu
// held.
func (t *turns) stopAwaiting() {
	close(t.arrived)
	t.awaited, t.arrived = nil, nil
	t.awaiting.Store(false)
}

// awaits reports whether the running turn waits for a fan-out of field
// (then even a small one takes a turn, to ride along).
func (t *turns) awaits(field string) bool {
	if !t.awaiting.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Contains(t.awaited, field)
}
