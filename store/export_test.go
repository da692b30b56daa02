package store

import (
	"context"
	"fmt"
	"strings"
)

// The notification reads whose plans TestNotificationQueryPlans checks.
const (
	InboxAfterQuery   = inboxAfterQuery
	UnreadCountsQuery = unreadCountsQuery
)

// QueryPlan returns the database's plan for query, one line per step of
// EXPLAIN (EXPLAIN QUERY PLAN on SQLite), each its columns as name=value.
func (db *DB) QueryPlan(ctx context.Context, query string, args ...any) (string, error) {
	explain := "EXPLAIN "
	if db.dialect == SQLite {
		explain = "EXPLAIN QUERY PLAN "
	}
	rows, err := db.gorm.WithContext(ctx).Raw(explain+query, args...).Rows()
	if err != nil {
		return "", err
	}
	defer rows.Close()
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
