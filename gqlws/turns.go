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
// A follower ready before the event it follows holds its turn for the
// event's the same way.
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
	// missed names the fields whose last wait (for their followers, or for
	// the fields they follow) ended in vain, until a fan-out of one of
	// those comes: meanwhile their events do not wait. (A follower that
	// merges the changes of several events, as a room list does when
	// messages come faster than it is read, comes once for all of them.)
	// Guarded by mu; anyMissed is len(missed), for a look without the
	// lock.
	missed    map[string]bool
	anyMissed atomic.Int32
	// scratch is the running turn's (see runPass).
	scratch turnScratch
}

// fanOutJob is one group's result for its members, waiting for a turn.
type fanOutJob struct {
	members []*operation
	result  queuedFrame
	class   int    // eventTurn or latestTurn
	field   string // the subscription field of its group
	// awaits are the fields whose fan-outs its turn waits for (the
	// followers of its event, or the fields its event follows), and wait
	// how long at most (see Options.Followers and followWait).
	awaits  []string
	wait    time.Duration
	follows []string // the fields its group's field follows (see Options.Followers)

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

// followersDue returns the job of batch whose awaited fields a turn of
// batch waits for (see Options.Followers): the first that waits, unless
// one of those is in batch already; nil when none.
func followersDue(batch []*fanOutJob) *fanOutJob {
	for _, job := range batch {
		if job.wait <= 0 {
			continue
		}
		if slices.ContainsFunc(batch, func(other *fanOutJob) bool { return slices.Contains(job.awaits, other.field) }) {
			return nil
		}
		return job
	}
	return nil
}

// awaitFollowers holds the running turn until a fan-out of one of the
// fields job awaits asks for a turn, for at most job.wait (or until ctx
// ends): at once when one waits already. A wait that none ends marks
// job's field as missed.
func (t *turns) awaitFollowers(ctx context.Context, job *fanOutJob) {
	t.mu.Lock()
	if slices.ContainsFunc(t.waiting, func(other *fanOutJob) bool { return slices.Contains(job.awaits, other.field) }) {
		t.mu.Unlock()
		return
	}
	arrived := make(chan struct{})
	t.awaited, t.arrived = job.awaits, arrived
	t.awaiting.Store(true)
	t.mu.Unlock()
	timer := time.NewTimer(job.wait)
	defer timer.Stop()
	vain := false
	select {
	case <-arrived:
		return
	case <-timer.C:
		vain = true
	case <-ctx.Done():
	}
	t.mu.Lock()
	if t.arrived == arrived {
		t.stopAwaiting()
		if vain && !t.missed[job.field] {
			if t.missed == nil {
				t.missed = make(map[string]bool)
			}
			t.missed[job.field] = true
			t.anyMissed.Add(1)
		}
	}
	t.mu.Unlock()
}

// hasMissed reports whether the last wait of field's events ended in vain
// (see missed).
func (t *turns) hasMissed(field string) bool {
	if t.anyMissed.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.missed[field]
}

// came lets the events of fields wait again (see missed): a fan-out of a
// field they follow, or that follows them, has come.
func (t *turns) came(fields []string) {
	if t.anyMissed.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, field := range fields {
		if t.missed[field] {
			delete(t.missed, field)
			t.anyMissed.Add(-1)
		}
	}
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
