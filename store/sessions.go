package store

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// CreateSession stores the new session s (its ID, user, roles, start and
// end already set).
func (db *DB) CreateSession(ctx context.Context, s *models.SessionRecord) error {
	s.CreatedAt = s.CreatedAt.UTC().Truncate(time.Millisecond)
	s.ExpiresAt = s.ExpiresAt.UTC().Truncate(time.Millisecond)
	return translate(db.gorm.WithContext(ctx).Create(s).Error, "create session")
}

// Session returns the session with the given id, or a models.NotFound
// error.
func (db *DB) Session(ctx context.Context, id string) (*models.SessionRecord, error) {
	var s models.SessionRecord
	if err := db.gorm.WithContext(ctx).Take(&s, "id = ?", id).Error; err != nil {
		return nil, translate(err, "find session")
	}
	utcSession(&s)
	return &s, nil
}

// RevokeSession marks session id revoked at at, unless it already was. It
// reports whether this call revoked it; an unknown id is models.NotFound.
func (db *DB) RevokeSession(ctx context.Context, id string, at time.Time) (bool, error) {
	res := db.gorm.WithContext(ctx).Model(&models.SessionRecord{}).
		Where("id = ? AND revoked_at IS NULL", id).
		Update("revoked_at", at.UTC().Truncate(time.Millisecond))
	if res.Error != nil {
		return false, translate(res.Error, "revoke session")
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	if _, err := db.Session(ctx, id); err != nil {
		return false, err
	}
	return false, nil
}

// RevokeUserSessions marks every session of user that has not ended by at
// revoked at at, and returns the ids of the user's revoked sessions that
// have not reached their end (those revoked before included: a caller
// announcing them may have failed to the first time).
func (db *DB) RevokeUserSessions(ctx context.Context, user int64, at time.Time) ([]string, error) {
	at = at.UTC().Truncate(time.Millisecond)
	err := db.gorm.WithContext(ctx).Model(&models.SessionRecord{}).
		Where("user_id = ? AND revoked_at IS NULL AND expires_at > ?", user, at).
		Update("revoked_at", at).Error
	if err != nil {
		return nil, translate(err, fmt.Sprintf("revoke the sessions of user %d", user))
	}
	var ids []string
	err = db.gorm.WithContext(ctx).Model(&models.SessionRecord{}).
		Where("user_id = ? AND revoked_at IS NOT NULL AND expires_at > ?", user, at).
		Order("id").Pluck("id", &ids).Error
	return ids, translate(err, fmt.Sprintf("list the sessions of user %d", user))
}

// RevokedSince returns the ids of the sessions revoked at or after since
// that have not reached their end by now, oldest revocation first.
func (db *DB) RevokedSince(ctx context.Context, since, now time.Time) ([]string, error) {
	var ids []string
	err := db.gorm.WithContext(ctx).Model(&models.SessionRecord{}).
		Where("revoked_at >= ? AND expires_at > ?", since.UTC().Truncate(time.Millisecond), now.UTC()).
		Order("revoked_at, id").Pluck("id", &ids).Error
	return ids, translate(err, "list revoked sessions")
}

// PruneSessions deletes the sessions that ended before before, revoked or
// not (no token of theirs is valid any more), and reports how many.
func (db *DB) PruneSessions(ctx context.Context, before time.Time) (int64, error) {
	res := db.gorm.WithContext(ctx).Where("expires_at < ?", before.UTC()).Delete(&models.SessionRecord{})
	return res.RowsAffected, translate(res.Error, "prune sessions")
}

// utcSession puts s's times in UTC, as the drivers may hand them back in
// another location.
func utcSession(s *models.SessionRecord) {
	s.CreatedAt = s.CreatedAt.UTC()
	s.ExpiresAt = s.ExpiresAt.UTC()
	if s.RevokedAt != nil {
		t := s.RevokedAt.UTC()
		s.RevokedAt = &t
	}
}
