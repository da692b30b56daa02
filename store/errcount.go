package store

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"

	"gorm.io/gorm"
)

// errorCounts counts the statements that failed, by kind, for metrics:
// "connection" (the database is unreachable), "conflict" (a unique key or
// a deadlock: expected under contention, and retried or answered), and
// "other" (worth a look). A record not found and a cancelled request are
// not failures.
type errorCounts struct {
	mu         sync.Mutex
	n          map[string]uint64
	statements atomic.Uint64 // every statement run through gorm
}

// Statements returns how many statements have run through gorm since the
// database was opened.
func (db *DB) Statements() uint64 { return db.errs.statements.Load() }

// ErrorCounts returns how many statements have failed since the database
// was opened, by kind.
func (db *DB) ErrorCounts() map[string]uint64 {
	db.errs.mu.Lock()
	defer db.errs.mu.Unlock()
	return maps.Clone(db.errs.n)
}

// countErrors registers gorm callbacks that count statements, and failed
// ones by kind.
func (db *DB) countErrors() error {
	db.errs.n = make(map[string]uint64)
	count := func(tx *gorm.DB) {
		db.errs.statements.Add(1)
		db.errs.failed(tx.Error)
	}
	cb := db.gorm.Callback()
	return errors.Join(
		cb.Create().After("gorm:create").Register("switchboard:count_errors", count),
		cb.Query().After("gorm:query").Register("switchboard:count_errors", count),
		cb.Update().After("gorm:update").Register("switchboard:count_errors", count),
		cb.Delete().After("gorm:delete").Register("switchboard:count_errors", count),
		cb.Row().After("gorm:row").Register("switchboard:count_errors", count),
		cb.Raw().After("gorm:raw").Register("switchboard:count_errors", count),
	)
}

// failed counts err, the failure of a statement, by kind (see errorCounts);
// nil and the errors that are no failure are not counted.
func (e *errorCounts) failed(err error) {
	if err == nil || errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	kind := "other"
	switch {
	case isConnectionError(err):
		kind = "connection"
	case isWriteConflict(err):
		kind = "conflict"
	}
	e.mu.Lock()
	e.n[kind]++
	e.mu.Unlock()
}
