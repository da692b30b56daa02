package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// The notification reads whose plans TestNotificationQueryPlans checks.
const (
	InboxAfterQuery   = inboxAfterQuery
	UnreadCountsQuery = unreadCountsQuery
)

// QueryPlan returns the database's plan for query, one line per step of
// EXPLAIN (EXPLAIN QUERY PLAN on SQLite), each its columns as name=value.
// On PostgreSQL sequential scans are off for it: on a test's few hundred
// rows its planner would scan whatever the indexes, and the question is
// whether an index serves the query.
func (db *DB) QueryPlan(ctx context.Context, query string, args ...any) (plan string, err error) {
	explain := "EXPLAIN "
	if db.dialect == SQLite {
		explain = "EXPLAIN QUERY PLAN "
	}
	err = db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if db.dialect == Postgres {
			if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
				return err
			}
		}
		rows, err := tx.Raw(explain+query, args...).Rows()
		if err != nil {
			return err
		}
		defer rows.Close()
		plan, err = planOf(rows)
		return err
	})
	return plan, err
}

// planOf reads the rows of an EXPLAIN.
func planOf(rows *sql.Rows) (string, error) {
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var plan strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		for i, c := range cols {
			v := vals[i]
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fmt.Fprintf(&plan, "%s=%v ", c, v)
		}
		plan.WriteString("\n")
	}
	return plan.String(), rows.Err()
}

// HoldAppends makes the appends to stream queue up, as behind a running
// batch, until release lets them go: then they commit as batches of up to
// maxAppendBatch, in the order they came.
func (db *DB) HoldAppends(stream string) (release func()) {
	a := &db.appends
	// A committer still finishing an earlier append would find the hold
	// empty and end it: let it end first.
	a.running.Wait()
	a.mu.Lock()
	if a.pending == nil {
		a.pending = make(map[string][]*appendReq)
	}
	a.pending[stream] = a.pending[stream][:0:0] // present: as if a committer ran
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.pending[stream]) == 0 {
			delete(a.pending, stream)
			return
		}
		a.running.Add(1)
		go db.commitLoop(stream)
	}
}

// PendingAppends reports how many appends wait for stream.
func (db *DB) PendingAppends(stream string) int {
	db.appends.mu.Lock()
	defer db.appends.mu.Unlock()
	return len(db.appends.pending[stream])
}
