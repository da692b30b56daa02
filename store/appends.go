package store

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/switchboardhq/switchboard/models"
)

// Group commit of appends.
//
// Appending to a stream holds its head row's lock until commit (see
// appendPosition), so the appends to one stream commit one after another,
// each waiting for the previous one's commit to be durable: concurrent
// writers of one stream would get one commit's worth of throughput between
// them. Instead, the appends that wait for a stream at the same moment are
// committed together: a committer goroutine per stream (running while
// appends wait, and owned by the DB) takes every append queued (up to
// maxAppendBatch) into one transaction that claims their idempotency keys,
// moves the head once by their number, writes each at its position, in the
// order they came, and commits once. Positions stay gap-free, unique and in
// commit order: a batch commits all of its positions at once, and batches
// of one process, and of several sharing the database, still take the head
// row's lock in turn.
//
// Each append keeps its own deadline (the caller's, bounded by the store's
// timeout): one still queued when it passes leaves the queue and fails
// with UNAVAILABLE, and a batch runs until the earliest deadline of its
// appends. When a batch fails for anything but an unreachable database (a
// key claimed by a concurrent request, a conflict), each of its appends
// runs again on its own, on its caller's goroutine, as it would have
// without batching, so that one append's failure is its own.

// maxAppendBatch is the most appends one transaction commits.
const maxAppendBatch = 64

// appendReq is one append waiting for its stream.
type appendReq struct {
	deadline time.Time               // the caller's, bounded by the store's timeout
	claim    func(tx *gorm.DB) error // claims its idempotency key, if any
	place    func(pos int64)         // gives the event its position
	writes   []appendWrite           // written once the batch's events have their positions
	remember func(tx *gorm.DB) error // stores the result under its key, if any
	done     chan appendOutcome      // receives the outcome, once
}

// appendWrite is a write of an append, made together with the same write
// of the other appends of its batch: of a batch's writes with one key, the
// last one's run is called once with the items of them all, in the order
// of their positions. So a batch's events go in one multi-row INSERT, and
// a room's latest activity or an author's read mark, of which the last is
// all that counts, is written once.
type appendWrite struct {
	key  string
	item any
	run  func(tx *gorm.DB, items []any) error
}

// writeAll makes the writes of batch (see appendWrite), in the order their
// keys first came.
func writeAll(tx *gorm.DB, batch []*appendReq) error {
	var order []string
	items := make(map[string][]any)
	last := make(map[string]func(tx *gorm.DB, items []any) error)
	for _, r := range batch {
		for _, w := range r.writes {
			if _, seen := last[w.key]; !seen {
				order = append(order, w.key)
			}
			items[w.key] = append(items[w.key], w.item)
			last[w.key] = w.run
		}
	}
	for _, k := range order {
		if err := last[k](tx, items[k]); err != nil {
			return err
		}
	}
	return nil
}

// insertEvents is the appendWrite run that inserts a batch's events (each
// a T, without its author) in one statement.
func insertEvents[T any](tx *gorm.DB, items []any) error {
	rows := make([]T, len(items))
	for i, it := range items {
		rows[i] = it.(T)
	}
	return tx.Omit("Author").Create(rows).Error
}

// appendOutcome is what an append learns once its batch is over: its error,
// or that it must run on its own.
type appendOutcome struct {
	err   error
	alone bool
}

// appenders holds the appends waiting for each stream; a stream with a
// queue has a committer running.
type appenders struct {
	mu      sync.Mutex
	pending map[string][]*appendReq
	running sync.WaitGroup // the committers
}

// appendOnce appends one event to stream, idempotently with key (nil:
// none), committed in a batch with the appends to stream that wait at the
// same time (see above). place gives the event its position, writes
// store it (see appendWrite) and result is what key remembers. replayed
// reports that a concurrent request
// with key committed first (then result holds its event; see once).
func appendOnce[T any](ctx context.Context, db *DB, stream string, key *models.Idempotency, now time.Time, result *T, place func(pos int64), writes ...appendWrite) (replayed bool, err error) {
	bounded, cancel := db.bound(ctx)
	defer cancel()
	deadline, _ := bounded.Deadline()
	req := &appendReq{
		deadline: deadline,
		claim:    func(tx *gorm.DB) error { return claim(tx, key, now) },
		place:    place,
		writes:   writes,
		remember: func(tx *gorm.DB) error { return remember(tx, key, result) },
		done:     make(chan appendOutcome, 1),
	}
	db.appends.enqueue(db, stream, req)
	var out appendOutcome
	select {
	case out = <-req.done:
	case <-bounded.Done():
		if db.appends.withdraw(stream, req) {
			return false, bounded.Err()
		}
		out = <-req.done // its batch runs until its deadline at the latest
	}
	if !out.alone {
		return false, out.err
	}
	return once(ctx, db, key, now, result, func(tx *gorm.DB) error {
		pos, err := appendPosition(tx, stream)
		if err != nil {
			return err
		}
		place(pos)
		return writeAll(tx, []*appendReq{req})
	})
}

// enqueue queues req for stream, starting the stream's committer unless
// it runs.
func (a *appenders) enqueue(db *DB, stream string, req *appendReq) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending == nil {
		a.pending = make(map[string][]*appendReq)
	}
	q, running := a.pending[stream]
	a.pending[stream] = append(q, req)
	if !running {
		a.running.Add(1)
		go db.commitLoop(stream)
	}
}

// withdraw removes req from stream's queue and reports whether it was
// still there (else a batch holds it).
func (a *appenders) withdraw(stream string, req *appendReq) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.pending[stream]
	for i, r := range q {
		if r == req {
			a.pending[stream] = append(q[:i:i], q[i+1:]...)
			return true
		}
	}
	return false
}

// take removes and returns the next batch of stream's appends; when none
// waits, it forgets the stream (its committer then ends).
func (a *appenders) take(stream string) []*appendReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.pending[stream]
	if len(q) == 0 {
		delete(a.pending, stream)
		return nil
	}
	n := min(len(q), maxAppendBatch)
	a.pending[stream] = q[n:]
	return q[:n:n]
}

// commitLoop is stream's committer: it commits batches of its appends
// until none waits.
func (db *DB) commitLoop(stream string) {
	defer db.appends.running.Done()
	for {
		batch := db.appends.take(stream)
		if len(batch) == 0 {
			return
		}
		deadline := batch[0].deadline
		for _, r := range batch[1:] {
			if r.deadline.Before(deadline) {
				deadline = r.deadline
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := db.commitAppends(ctx, stream, batch)
		cancel()
		// A batch that failed for one of its appends: each runs on its own,
		// so that its failure is its own.
		alone := err != nil && !isConnectionError(err)
		for _, r := range batch {
			r.done <- appendOutcome{err: err, alone: alone}
		}
	}
}

// commitAppends commits batch in one transaction: the keys claimed, the
// head moved by len(batch), each event placed at its position, their
// writes made, each result remembered; on MySQL in two round trips (see
// commitPipelined).
func (db *DB) commitAppends(ctx context.Context, stream string, batch []*appendReq) error {
	if db.pipelined != nil {
		return db.commitPipelined(ctx, stream, batch)
	}
	return db.transaction(ctx, func(tx *gorm.DB) error {
		if err := claimAll(tx, batch); err != nil {
			return err
		}
		last, err := appendPositions(tx, stream, len(batch))
		if err != nil {
			return err
		}
		return writeBatch(tx, batch, last)
	})
}

// claimAll claims the keys of batch's appends.
func claimAll(tx *gorm.DB, batch []*appendReq) error {
	for _, r := range batch {
		if err := r.claim(tx); err != nil {
			return err
		}
	}
	return nil
}

// writeBatch places batch's events at the positions up to last, makes
// their writes and remembers each result.
func writeBatch(tx *gorm.DB, batch []*appendReq, last int64) error {
	for i, r := range batch {
		r.place(last - int64(len(batch)-1-i))
	}
	if err := writeAll(tx, batch); err != nil {
		return err
	}
	for _, r := range batch {
		if err := r.remember(tx); err != nil {
			return err
		}
	}
	return nil
}
