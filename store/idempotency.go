package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/switchboardhq/switchboard/models"
)

// idempotencyKey remembers a keyed write (see models.Idempotency): whose
// key, for which operation, the fingerprint of its arguments and its
// result as JSON, the answer every retry gets. Its primary key is the
// unique index that makes a key work once on every replica: a second
// record of the same user, operation and key is refused by the database,
// and the write that tried to add it is rolled back with it. The key is
// bytes, so that it compares exactly on MySQL too (its text columns here
// ignore case).
type idempotencyKey struct {
	UserID      int64     `gorm:"primaryKey;autoIncrement:false"`
	Operation   string    `gorm:"primaryKey;size:32"`
	ClientKey   []byte    `gorm:"primaryKey;size:128"`
	Fingerprint string    `gorm:"size:64;not null"`
	Result      []byte    `gorm:"size:16777215;not null"` // MySQL: a MEDIUMBLOB, for 500 KPIs
	CreatedAt   time.Time `gorm:"index;not null"`
}

// Replay reads the result remembered for key into into (a pointer to a
// zero value of what the write's method returns) and reports whether
// there was one. A key
// remembered with another fingerprint is models.BadUserInput (see
// models.Idempotency.Reused). A key remembered before now minus
// models.IdempotencyWindow counts as unused: its record is deleted, so
// that the key can be remembered again. A nil key was never remembered.
func (db *DB) Replay(ctx context.Context, key *models.Idempotency, now time.Time, into any) (bool, error) {
	if key == nil {
		return false, nil
	}
	var rec idempotencyKey
	same := db.gorm.WithContext(ctx).Where("user_id = ? AND operation = ? AND client_key = ?", key.UserID, key.Operation, []byte(key.Key))
	res := same.Limit(1).Find(&rec)
	if res.Error != nil {
		return false, translate(res.Error, "read idempotency key")
	}
	if res.RowsAffected == 0 {
		return false, nil
	}
	if cutoff := now.Add(-models.IdempotencyWindow); rec.CreatedAt.Before(cutoff) {
		err := db.gorm.WithContext(ctx).Where("user_id = ? AND operation = ? AND client_key = ? AND created_at < ?",
			key.UserID, key.Operation, []byte(key.Key), cutoff.UTC()).Delete(&idempotencyKey{}).Error
		return false, translate(err, "delete expired idempotency key")
	}
	if rec.Fingerprint != key.Fingerprint {
		return false, key.Reused()
	}
	if err := json.Unmarshal(rec.Result, into); err != nil {
		return false, fmt.Errorf("read the result remembered for %s: %w", key.Operation, err)
	}
	return true, nil
}

// once runs write in a transaction of db and, with a key, remembers
// *result (what write fills) under it in the same transaction, at now: the
// write and its key are committed together or not at all. The key is
// claimed first, before the write: a request with a key that another
// request holds (one still in flight: on MySQL the claim waits for that
// transaction, SQLite runs them one after the other) or committed is
// refused by the unique index before it writes anything, and *result
// becomes the first request's: replayed is true. A key whose record had
// expired is claimed anew. Errors are the database's, untranslated, or
// Replay's.
func once[T any](ctx context.Context, db *DB, key *models.Idempotency, now time.Time, result *T, write func(tx *gorm.DB) error) (replayed bool, err error) {
	for range maxConflictAttempts {
		err = db.transaction(ctx, func(tx *gorm.DB) error {
			if err := claim(tx, key, now); err != nil {
				return &claimError{err}
			}
			if err := write(tx); err != nil {
				return err
			}
			return remember(tx, key, result)
		})
		var taken *claimError
		switch {
		case !errors.As(err, &taken):
			return false, err
		case errors.Is(err, gorm.ErrDuplicatedKey):
			// Replay returns the first request's result, or deletes an
			// expired record and the write runs again.
			var first T
			replayed, err := db.Replay(ctx, key, now, &first)
			if replayed {
				*result = first
			}
			if replayed || err != nil {
				return replayed, err
			}
		case !isWriteConflict(err):
			// A MySQL deadlock of claims (when the request holding the key
			// rolls back, those waiting for it can deadlock) runs again.
			return false, taken.err
		}
	}
	return false, err
}

// claimError is a failure to claim a key.
type claimError struct{ err error }

func (e *claimError) Error() string { return "claim idempotency key: " + e.err.Error() }
func (e *claimError) Unwrap() error { return e.err }

// claim adds the record of key (nil: none), without its result yet,
// inside tx.
func claim(tx *gorm.DB, key *models.Idempotency, now time.Time) error {
	if key == nil {
		return nil
	}
	return tx.Create(&idempotencyKey{
		UserID: key.UserID, Operation: key.Operation, ClientKey: []byte(key.Key),
		Fingerprint: key.Fingerprint, Result: []byte{}, CreatedAt: now.UTC().Truncate(time.Millisecond),
	}).Error
}

// remember stores result in the record of key (nil: none) that tx claimed.
func remember(tx *gorm.DB, key *models.Idempotency, result any) error {
	if key == nil {
		return nil
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("remember the result of %s: %w", key.Operation, err)
	}
	return tx.Model(&idempotencyKey{}).Where("user_id = ? AND operation = ? AND client_key = ?", key.UserID, key.Operation, []byte(key.Key)).
		Update("result", raw).Error
}

// PruneIdempotencyKeys deletes the keys remembered before before and
// reports how many went.
func (db *DB) PruneIdempotencyKeys(ctx context.Context, before time.Time) (int64, error) {
	res := db.gorm.WithContext(ctx).Where("created_at < ?", before.UTC()).Delete(&idempotencyKey{})
	if res.Error != nil {
		return 0, translate(res.Error, "prune idempotency keys")
	}
	return res.RowsAffected, nil
}
