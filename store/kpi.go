package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/switchboardhq/switchboard/models"
)

// RecordKPIs records a validated batch of values at now: every KPI's value
// becomes current (the one before it its previous value) and a sample is
// kept. The batch is one transaction: all of it is stored or none. It
// returns the KPIs as they now are, in input order. With a key (nil:
// none), the batch and the key are committed together; a key that a
// concurrent request committed first rolls this batch back, and the KPIs
// returned are that request's: replayed is true (see once).
func (db *DB) RecordKPIs(ctx context.Context, in []*models.KPIInput, now time.Time, key *models.Idempotency) (out []*models.KPI, replayed bool, err error) {
	now = now.UTC().Truncate(time.Millisecond)
	// The rows are locked in one order whatever the input order, so that
	// concurrent batches wait for each other instead of deadlocking.
	order := make([]int, len(in))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return compareKPINames(in[a].Module, in[a].Key, in[b].Module, in[b].Key) })
	// Batches creating the same KPI at once can still collide on MySQL
	// (each locks the gap the new row goes into); the loser is rolled back
	// whole and runs again.
	err = retryConflicts(func() (err error) {
		replayed, err = once(ctx, db, key, now, &out, func(tx *gorm.DB) (err error) {
			out, err = recordKPIs(tx, in, order, now)
			return err
		})
		return err
	})
	if err != nil {
		return nil, false, translate(err, "record KPIs")
	}
	return out, replayed, nil
}

// compareKPINames orders KPIs by module, then key, byte by byte (not as
// MySQL's collation would).
func compareKPINames(moduleA, keyA, moduleB, keyB string) int {
	return cmp.Or(strings.Compare(moduleA, moduleB), strings.Compare(keyA, keyB))
}

// recordKPIs runs one attempt of RecordKPIs in tx, taking the inputs in
// order.
func recordKPIs(tx *gorm.DB, in []*models.KPIInput, order []int, now time.Time) ([]*models.KPI, error) {
	out := make([]*models.KPI, len(in))
	for _, i := range order {
		v := in[i]
		var cur models.KPI
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).
			Take(&cur, map[string]any{"module": v.Module, "key": v.Key}).Error
		exists := err == nil
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, err
		}
		k := &models.KPI{Module: v.Module, Key: v.Key, Label: cur.Label, Unit: cur.Unit, Value: v.Value, UpdatedAt: now}
		if exists {
			prev := cur.Value
			k.Previous = &prev
		} else {
			k.Label = v.Key
		}
		if v.Label != nil && *v.Label != "" {
			k.Label = *v.Label
		}
		if v.Unit != nil {
			k.Unit = *v.Unit
		}
		if exists {
			err = tx.Model(&models.KPI{}).Where(map[string]any{"module": v.Module, "key": v.Key}).
				Updates(map[string]any{"label": k.Label, "unit": k.Unit, "value": k.Value, "previous": k.Previous, "updated_at": now}).Error
		} else {
			err = tx.Create(k).Error
		}
		if err != nil {
			return nil, err
		}
		if err := tx.Create(&models.KPISample{Module: v.Module, Key: v.Key, Value: v.Value, At: now}).Error; err != nil {
			return nil, err
		}
		out[i] = k
	}
	return out, nil
}

// KPIs returns the current KPIs of module ("" for every module), by module
// and key, byte by byte whichever the database.
func (db *DB) KPIs(ctx context.Context, module string) ([]*models.KPI, error) {
	var out []*models.KPI
	q := db.gorm.WithContext(ctx)
	if module != "" {
		q = q.Where("module = ?", module)
	}
	if err := q.Find(&out).Error; err != nil {
		return nil, translate(err, "list KPIs")
	}
	// MySQL's collation also matches other cases and trailing spaces, and
	// sorts '_' and '-' otherwise: compare and sort names exactly here.
	if module != "" {
		out = slices.DeleteFunc(out, func(k *models.KPI) bool { return k.Module != module })
	}
	slices.SortFunc(out, func(a, b *models.KPI) int { return compareKPINames(a.Module, a.Key, b.Module, b.Key) })
	for _, k := range out {
		k.UpdatedAt = k.UpdatedAt.UTC()
	}
	return out, nil
}

// Modules returns the names of the modules that have KPIs, sorted.
func (db *DB) Modules(ctx context.Context) ([]string, error) {
	var out []string
	if err := db.gorm.WithContext(ctx).Model(&models.KPI{}).Distinct().Pluck("module", &out).Error; err != nil {
		return nil, translate(err, "list modules")
	}
	slices.Sort(out) // byte by byte, as KPIs
	return out, nil
}

// KPIHistory returns the newest limit samples of a KPI at or after since,
// oldest first.
func (db *DB) KPIHistory(ctx context.Context, module, key string, since time.Time, limit int) ([]*models.KPISample, error) {
	var out []*models.KPISample
	err := db.gorm.WithContext(ctx).Where(map[string]any{"module": module, "key": key}).Where("at >= ?", since.UTC()).
		Order("at DESC, id DESC").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, translate(err, "read KPI history")
	}
	// Names differing only in case or trailing spaces match on MySQL; no
	// such KPI exists (see KPIs).
	out = slices.DeleteFunc(out, func(s *models.KPISample) bool { return s.Module != module || s.Key != key })
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	for _, s := range out {
		s.At = s.At.UTC()
	}
	return out, nil
}

// PruneKPISamples deletes the samples older than before and reports how
// many went.
func (db *DB) PruneKPISamples(ctx context.Context, before time.Time) (int64, error) {
	res := db.gorm.WithContext(ctx).Where("at < ?", before.UTC()).Delete(&models.KPISample{})
	if res.Error != nil {
		return 0, translate(res.Error, "prune KPI samples")
	}
	return res.RowsAffected, nil
}
