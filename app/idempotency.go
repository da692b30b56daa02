package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/store"
)

// How every replica deletes the idempotency keys past their window: a
// pass at start and then each pruneKeysEvery, each pass bounded by
// pruneKeysTimeout, so that a database that hangs holds up no more than
// one bounded pass. Replicas pruning at once delete nothing twice.
const (
	pruneKeysEvery   = time.Hour
	pruneKeysTimeout = time.Minute
)

// pruneIdempotencyKeys deletes the keys of db remembered for longer than
// models.IdempotencyWindow (as of now()), every interval, until ctx ends.
// A failed pass is logged and tried again at the next; a pass that panics
// is reported by guard, and the next runs as usual.
func pruneIdempotencyKeys(ctx context.Context, db *store.DB, log *slog.Logger, guard *panics.Guard, now func() time.Time, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		guard.Do(ctx, "app.prune", func() { pruneKeysOnce(ctx, db, log, now()) })
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneKeysOnce runs one bounded pass of pruneIdempotencyKeys at now.
// A pass cut short by the server's shutdown is not logged.
func pruneKeysOnce(ctx context.Context, db *store.DB, log *slog.Logger, now time.Time) {
	pass, cancel := context.WithTimeout(ctx, pruneKeysTimeout)
	defer cancel()
	n, err := db.PruneIdempotencyKeys(pass, now.Add(-models.IdempotencyWindow))
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		log.Warn("idempotency keys: prune failed", "timeout", pruneKeysTimeout.String(), "err", err)
	case n > 0:
		log.Info("idempotency keys: pruned", "count", n, "window", models.IdempotencyWindow.String())
	}
}
