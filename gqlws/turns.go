package gqlws

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
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
type turns struct {
	mu      sync.Mutex
	busy    bool         // a turn runs
	waiting []*fanOutJob // fan-outs for the next turn, in the order they asked
	// queued is len(waiting), for the running turn to look at without the
	// lock (see adopt).
	queued atomic.Int32
}

// fanOutJob is one group's result for its members, waiting for a turn.
type fanOutJob struct {
	members []*operation
	result  queuedFrame
	class   int // eventTurn or latestTurn

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
