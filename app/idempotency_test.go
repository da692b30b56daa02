package app

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestPruneIdempotencyKeys: a pass deletes the keys older than the window
// and keeps the others, and says how many went.
func TestPruneIdempotencyKeys(t *testing.T) {
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

	var logs bytes.Buffer
	pruneKeysOnce(t.Context(), db, slog.New(slog.NewTextHandler(&logs, nil)), now)
	assert.Contains(t, logs.String(), "msg=\"idempotency keys: pruned\" count=1 window=24h0m0s")
	n, err := db.PruneIdempotencyKeys(t.Context(), now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the recent key was kept")
}
