package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// DefaultTimeout is the Timeout of a store opened without one: long enough
// for any statement Switchboard runs on a healthy database (they take
// milliseconds; a busy SQLite writer queue or a MySQL lock wait, a second or
// two), short enough that a client asked to try again later is told so
// before it gives up by itself.
const DefaultTimeout = 5 * time.Second

// Options configure a store.
type Options struct {
	// Timeout is the longest wait for one database statement (one
	// transaction, as a whole), the wait for a free connection included;
	// then the operation fails with models.Unavailable. 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Log receives, at debug level, what the database driver says by
	// itself (a connection that timed out or was closed under it); nil
	// discards it.
	Log *slog.Logger
}

// How the store keeps a database that stops answering from holding up its
// callers: every statement run through gorm gets a context whose deadline
// is the caller's own, bounded by the store's timeout (boundStatements);
// a transaction gets one deadline for all of it (transaction); the few
// calls on database/sql itself bound their context with bound. The context
// also bounds the wait for a connection when the pool is exhausted
// (database/sql gives up that wait when the context ends), and the MySQL
// driver's read and write timeouts (the same length) cover what runs
// without a context: COMMIT and ROLLBACK. The pool has a fixed size, so the
// connections and goroutines stuck on a hung database stay bounded, and
// once it answers again the next statements simply succeed.

// bound returns ctx with the store's timeout as its longest deadline.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.timeout)
}

// transaction runs fc in a transaction whose statements, commit included,
// all end before ctx's deadline bounded by the store's timeout.
func (db *DB) transaction(ctx context.Context, fc func(tx *gorm.DB) error) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.gorm.WithContext(ctx).Transaction(fc)
}

// deadlineKey keeps, in a statement's settings, what boundStatements must
// undo when the statement ends.
const deadlineKey = "switchboard:deadline"

// statementDeadline is the context a statement had before it was bounded,
// and the cancel of the bounded one.
type statementDeadline struct {
	parent context.Context
	cancel context.CancelFunc
}

// boundStatements registers gorm callbacks that run every statement under
// the caller's context bounded by the store's timeout, first of all
// callbacks, and restore the caller's context last (a chained *gorm.DB
// runs its next statement under a deadline of its own). A statement that
// returns rows for its caller to read (Row, Rows, Scan) keeps its deadline
// until the deadline passes: its rows are read after the callbacks end.
func (db *DB) boundStatements() error {
	begin := func(tx *gorm.DB) {
		ctx, cancel := db.bound(tx.Statement.Context)
		tx.Statement.Settings.Store(deadlineKey, statementDeadline{parent: tx.Statement.Context, cancel: cancel})
		tx.Statement.Context = ctx
	}
	end := func(release bool) func(tx *gorm.DB) {
		return func(tx *gorm.DB) {
			v, ok := tx.Statement.Settings.LoadAndDelete(deadlineKey)
			if !ok {
				return
			}
			d := v.(statementDeadline)
			if release {
				d.cancel()
			}
			tx.Statement.Context = d.parent
		}
	}
	cb := db.gorm.Callback()
	const begins, ends = deadlineKey + ":begin", deadlineKey + ":end"
	return errors.Join(
		cb.Create().Before("*").Register(begins, begin), cb.Create().After("*").Register(ends, end(true)),
		cb.Query().Before("*").Register(begins, begin), cb.Query().After("*").Register(ends, end(true)),
		cb.Update().Before("*").Register(begins, begin), cb.Update().After("*").Register(ends, end(true)),
		cb.Delete().Before("*").Register(begins, begin), cb.Delete().After("*").Register(ends, end(true)),
		cb.Raw().Before("*").Register(begins, begin), cb.Raw().After("*").Register(ends, end(true)),
		cb.Row().Before("*").Register(begins, begin), cb.Row().After("*").Register(ends, end(false)),
	)
}
