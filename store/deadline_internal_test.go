package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestEveryStatementHasADeadline: each statement runs under the caller's
// deadline bounded by the store's timeout, whichever comes first, and a
// chained *gorm.DB gets its caller's context back after each statement,
// so that its next one runs under a deadline of its own.
func TestEveryStatementHasADeadline(t *testing.T) {
	t.Parallel()
	const timeout = time.Minute
	db, err := Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), Options{Timeout: timeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(t.Context()))
	var mu sync.Mutex
	var deadlines []time.Duration // left when each query started
	require.NoError(t, db.gorm.Callback().Query().Before("gorm:query").Register("test:deadline", func(tx *gorm.DB) {
		d, ok := tx.Statement.Context.Deadline()
		mu.Lock()
		defer mu.Unlock()
		if ok {
			deadlines = append(deadlines, time.Until(d))
		} else {
			deadlines = append(deadlines, -1)
		}
	}))
	seen := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		out := deadlines
		deadlines = nil
		return out
	}

	ctx := context.Background()
	q := db.gorm.WithContext(ctx).Model(&stream{}).Where("name <> ''")
	var n int64
	require.NoError(t, q.Count(&n).Error)
	require.NoError(t, q.Count(&n).Error, "the chain's second statement runs")
	assert.Equal(t, ctx, q.Statement.Context, "the caller's context is given back")
	got := seen()
	require.Len(t, got, 2)
	for _, left := range got {
		assert.Greater(t, left, timeout-time.Second, "the store's timeout")
		assert.LessOrEqual(t, left, timeout)
	}

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = db.Head(short, "statuses")
	require.NoError(t, err)
	got = seen()
	require.Len(t, got, 1)
	assert.LessOrEqual(t, got[0], time.Second, "the caller's shorter deadline")
}
