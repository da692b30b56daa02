package store

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// CreateStatus appends a status by author (text already validated) to the
// status stream, at now truncated to the millisecond, and returns it with its
// author. The status's ID is its position in the stream; concurrent posts
// are committed together (see appendOnce). With a key (nil:
// none), the status and the key are committed together; a key that a
// concurrent request committed first rolls this status back, and the
// status returned is that request's: replayed is true (see once).
func (db *DB) CreateStatus(ctx context.Context, author *models.User, text string, now time.Time, key *models.Idempotency) (st *models.Status, replayed bool, err error) {
	if err := db.ensureStream(ctx, models.StatusStream); err != nil {
		return nil, false, err
	}
	st = &models.Status{Text: text, AuthorID: author.ID, Author: author, CreatedAt: now.UTC().Truncate(time.Millisecond)}
	replayed, err = appendOnce(ctx, db, models.StatusStream, key, now, &st, func(pos int64) { st.ID = pos },
		appendWrite{key: "insert", item: st, run: insertEvents[*models.Status]})
	if err != nil {
		return nil, false, translate(err, "create status")
	}
	return st, replayed, nil
}

// StatusesAfter returns up to limit statuses with an ID greater than after,
// oldest first, with their authors: the replay of statusPosted.
func (db *DB) StatusesAfter(ctx context.Context, after int64, limit int) ([]*models.Status, error) {
	var out []*models.Status
	err := db.gorm.WithContext(ctx).Preload("Author").
		Where("id > ?", after).Order("id ASC").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, translate(err, "list statuses")
	}
	normalize(out)
	return out, nil
}

// StatusesBefore returns up to limit statuses with an ID lower than before
// (any ID when before is 0), newest first, with their authors: a page of the
// feed.
func (db *DB) StatusesBefore(ctx context.Context, before int64, limit int) ([]*models.Status, error) {
	var out []*models.Status
	q := db.gorm.WithContext(ctx).Preload("Author").Order("id DESC").Limit(limit)
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	if err := q.Find(&out).Error; err != nil {
		return nil, translate(err, "list statuses")
	}
	normalize(out)
	return out, nil
}

// normalize puts read timestamps in UTC, so an event read back looks exactly
// like the one delivered live.
func normalize(statuses []*models.Status) {
	for _, s := range statuses {
		s.CreatedAt = s.CreatedAt.UTC()
		if s.Author != nil {
			s.Author.CreatedAt = s.Author.CreatedAt.UTC()
		}
	}
}

// StatusLog reads the status stream for stream.Feed: its head and the
// statuses after a position.
type StatusLog struct{ db *DB }

// StatusLog returns the status stream's reader.
func (db *DB) StatusLog() StatusLog { return StatusLog{db: db} }

// Head returns the ID of the newest committed status.
func (l StatusLog) Head(ctx context.Context, stream string) (int64, error) {
	return l.db.Head(ctx, stream)
}

// After returns up to limit statuses after position after, oldest first.
func (l StatusLog) After(ctx context.Context, _ string, after int64, limit int) ([]*models.Status, error) {
	return l.db.StatusesAfter(ctx, after, limit)
}
