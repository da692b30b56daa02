package app

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestPruneIdempotencyKeys: a pass deletes the keys older than the window
// and keeps the others, and says how many went.
func TestPruneIdempotencyKeys(t *testing.T) {
	db, now := keysOldAndRecent(t)
	var logs bytes.Buffer
	pruneKeysOnce(t.Context(), db, slog.New(slog.NewTextHandler(&logs, nil)), now)
	assert.Contains(t, logs.String(), "msg=\"idempotency keys: pruned\" count=1 window=24h0m0s")
	n, err := db.PruneIdempotencyKeys(t.Context(), now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the recent key was kept")
}

// keysOldAndRecent returns a database with two statuses posted with an
// idempotency key, one past the window as of the time returned, one
// within it.
func keysOldAndRecent(t *testing.T) (*store.DB, time.Time) {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	ada, err := db.CreateUser(t.Context(), "ada")
	require.NoError(t, err)
	now := time.Now()
	key := func(k string) *models.Idempotency {
		once, err := models.NewIdempotency(ada, models.OpPostStatus, k, k)
		require.NoError(t, err)
		return once
	}
	_, _, err = db.CreateStatus(t.Context(), ada, "old", now.Add(-models.IdempotencyWindow-time.Minute), key("old"))
	require.NoError(t, err)
	_, _, err = db.CreateStatus(t.Context(), ada, "recent", now.Add(-time.Minute), key("recent"))
	require.NoError(t, err)
	return db, now
}

// TestPruneIdempotencyKeysAfterAPanic: a pass that panics is reported
// (where="app.prune") and costs that pass only: the next one, an interval
// later, prunes as usual. The server's interval is an hour, so the end to
// end test (e2e/panics_test.go) sees only the first pass, at start.
func TestPruneIdempotencyKeysAfterAPanic(t *testing.T) {
	db, now := keysOldAndRecent(t)
	var mu sync.Mutex
	var counted []string
	var once sync.Once
	guard := &panics.Guard{
		Log:   slog.New(slog.DiscardHandler),
		Count: func(where string) { mu.Lock(); counted = append(counted, where); mu.Unlock() },
		Inject: func(where string) {
			if where == "app.prune" {
				once.Do(func() { panic("injected") })
			}
		},
	}
	// Each pass that gets past the injection point asks the time first: the
	// second such call means the first has pruned.
	passes := make(chan struct{}, 100)
	clock := func() time.Time { passes <- struct{}{}; return now }
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pruneIdempotencyKeys(ctx, db, slog.New(slog.DiscardHandler), guard, clock, 10*time.Millisecond)
	}()
	for range 2 {
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatal("no pass after the panic")
		}
	}
	stop()
	<-done
	mu.Lock()
	assert.Equal(t, []string{"app.prune"}, counted, "the first pass panicked, once")
	mu.Unlock()
	n, err := db.PruneIdempotencyKeys(t.Context(), now.Add(-models.IdempotencyWindow))
	require.NoError(t, err)
	assert.Zero(t, n, "the pass after the panic pruned the old key")
}
