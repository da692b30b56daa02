package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/switchboardhq/switchboard/models"
)

// CreateNotification appends n (validated) to the notification stream at
// now; its ID becomes its position. With a key (nil: none), the
// notification and the key are committed together; a key that a
// concurrent request committed first rolls this one back, and n becomes
// that request's notification: replayed is true (see once).
func (db *DB) CreateNotification(ctx context.Context, n *models.Notification, now time.Time, key *models.Idempotency) (replayed bool, err error) {
	if err := db.ensureStream(ctx, models.NotificationStream); err != nil {
		return false, err
	}
	n.CreatedAt = now.UTC().Truncate(time.Millisecond)
	replayed, err = once(ctx, db, key, now, n, func(tx *gorm.DB) error {
		pos, err := appendPosition(tx, models.NotificationStream)
		if err != nil {
			return err
		}
		n.ID = pos
		return tx.Create(n).Error
	})
	return replayed, translate(err, "create notification")
}

// inbox restricts a query on notifications to user's inbox: the rule of
// models.Notification.InInbox in SQL (addressed to them, or to everyone
// since the second they were created).
func inbox(q *gorm.DB, u *models.User) *gorm.DB {
	return q.Where("notifications.recipient_id = ? OR (notifications.recipient_id IS NULL AND notifications.created_at >= ?)",
		u.ID, u.CreatedAt.UTC().Truncate(time.Second))
}

// notificationRow is a notification with the reader's read flag.
type notificationRow struct {
	models.Notification
	IsRead bool
}

// withReads selects notifications with user's read flag (is_read).
func withReads(q *gorm.DB, u *models.User) *gorm.DB {
	return q.Select("notifications.*, notification_reads.user_id IS NOT NULL AS is_read").
		Joins("LEFT JOIN notification_reads ON notification_reads.notification_id = notifications.id AND notification_reads.user_id = ?", u.ID)
}

// scanNotifications runs q and returns its notifications with read flags.
func scanNotifications(q *gorm.DB, what string) ([]*models.Notification, error) {
	var rows []notificationRow
	if err := q.Scan(&rows).Error; err != nil {
		return nil, translate(err, what)
	}
	out := make([]*models.Notification, len(rows))
	for i := range rows {
		n := &rows[i].Notification
		n.CreatedAt = n.CreatedAt.UTC()
		n.Read = rows[i].IsRead
		out[i] = n
	}
	return out, nil
}

// Notifications returns up to limit notifications of user's inbox with an
// ID below before (any when 0), newest first, each with whether user has
// read it; only unread ones with unreadOnly.
func (db *DB) Notifications(ctx context.Context, u *models.User, unreadOnly bool, before int64, limit int) ([]*models.Notification, error) {
	q := withReads(inbox(db.gorm.WithContext(ctx).Table("notifications"), u), u).
		Order("notifications.id DESC").Limit(limit)
	if before > 0 {
		q = q.Where("notifications.id < ?", before)
	}
	if unreadOnly {
		q = q.Where("notification_reads.user_id IS NULL")
	}
	return scanNotifications(q, "list notifications")
}

// Notification returns notification id of user's inbox with its read flag;
// another user's notification is the same models.NotFound as a missing one.
func (db *DB) Notification(ctx context.Context, u *models.User, id int64) (*models.Notification, error) {
	q := withReads(inbox(db.gorm.WithContext(ctx).Table("notifications"), u), u).Where("notifications.id = ?", id)
	ns, err := scanNotifications(q, "read notification")
	if err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return nil, models.Errorf(models.NotFound, "notification %d not found", id)
	}
	return ns[0], nil
}

// MarkNotificationRead marks notification id of user's inbox read.
func (db *DB) MarkNotificationRead(ctx context.Context, u *models.User, id int64) (*models.Notification, error) {
	n, err := db.Notification(ctx, u, id)
	if err != nil {
		return nil, err
	}
	// A deadlock with a concurrent mark-all (MySQL) is retried.
	err = retryConflicts(func() error {
		return db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
			Create(&models.NotificationRead{UserID: u.ID, NotificationID: id}).Error
	})
	if err != nil {
		return nil, translate(err, fmt.Sprintf("mark notification %d read", id))
	}
	n.Read = true
	return n, nil
}

// MarkAllNotificationsRead marks every unread notification of user's inbox
// read and reports how many there were.
func (db *DB) MarkAllNotificationsRead(ctx context.Context, u *models.User) (int, error) {
	// Rows another tab marks meanwhile are skipped (IGNORE), not errors;
	// on MySQL, the gap locks of INSERT … SELECT can still deadlock with a
	// concurrent mark, and the loser simply runs again.
	insert, onConflict := "INSERT IGNORE INTO", ""
	switch db.dialect {
	case SQLite:
		insert = "INSERT OR IGNORE INTO"
	case Postgres:
		insert, onConflict = "INSERT INTO", " ON CONFLICT DO NOTHING"
	}
	var marked int
	err := retryConflicts(func() error {
		sub := inbox(db.gorm.Table("notifications"), u).
			Select("?, notifications.id", u.ID).
			Joins("LEFT JOIN notification_reads ON notification_reads.notification_id = notifications.id AND notification_reads.user_id = ?", u.ID).
			Where("notification_reads.user_id IS NULL")
		res := db.gorm.WithContext(ctx).Exec(insert+" notification_reads (user_id, notification_id) ?"+onConflict, sub)
		marked = int(res.RowsAffected)
		return res.Error
	})
	if err != nil {
		return 0, translate(err, "mark all notifications read")
	}
	return marked, nil
}

// UnreadNotifications counts the unread notifications of user's inbox.
func (db *DB) UnreadNotifications(ctx context.Context, u *models.User) (int, error) {
	var n int64
	err := inbox(db.gorm.WithContext(ctx).Table("notifications"), u).
		Joins("LEFT JOIN notification_reads ON notification_reads.notification_id = notifications.id AND notification_reads.user_id = ?", u.ID).
		Where("notification_reads.user_id IS NULL").Count(&n).Error
	if err != nil {
		return 0, translate(err, "count unread notifications")
	}
	return int(n), nil
}

// unreadCountsChunk is how many users one UnreadNotificationCounts
// statement counts for (SQLite allows 500 terms in a compound SELECT).
const unreadCountsChunk = 200

// unreadCountsQuery counts the unread notifications of several inboxes in
// one statement: the part addressed to each user and the part addressed to
// everyone since their second (each an index range of
// idx_notifications_inbox), less what they have read. It also reads the
// notification stream's head: one statement sees one snapshot, so the
// counts hold exactly the notifications up to that position.
const unreadCountsQuery = `SELECT w.user_id,
 (SELECT COUNT(*) FROM notifications n
   LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = w.user_id
   WHERE n.recipient_id = w.user_id AND r.user_id IS NULL)
 + (SELECT COUNT(*) FROM notifications n
   LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = w.user_id
   WHERE n.recipient_id IS NULL AND n.created_at >= w.since AND r.user_id IS NULL) AS unread,
 (SELECT head FROM streams WHERE name = ?) AS head
FROM (%s) w`

// UnreadNotificationCounts counts the unread notifications of the inboxes
// of users, in one statement per 200 users whatever the number of
// notifications, and returns one count per user with the position of the
// notification stream it is exact at.
func (db *DB) UnreadNotificationCounts(ctx context.Context, users []*models.User) ([]UnreadCount, error) {
	out := make([]UnreadCount, 0, len(users))
	for chunk := range slices.Chunk(users, unreadCountsChunk) {
		args := []any{models.NotificationStream}
		term := "SELECT ? AS user_id, ? AS since"
		if db.dialect == Postgres { // its parameters have no type of their own there
			term = "SELECT CAST(? AS BIGINT) AS user_id, CAST(? AS TIMESTAMPTZ) AS since"
		}
		terms := make([]string, len(chunk))
		for i, u := range chunk {
			terms[i] = term
			args = append(args, u.ID, u.CreatedAt.UTC().Truncate(time.Second))
		}
		var rows []UnreadCount
		q := fmt.Sprintf(unreadCountsQuery, strings.Join(terms, " UNION ALL "))
		if err := db.gorm.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
			return nil, translate(err, "count unread notifications")
		}
		out = append(out, rows...)
	}
	return out, nil
}

// UnreadCount is a user's unread count, exact at position Head of the
// notification stream: it counts every notification up to Head and none
// after it.
type UnreadCount struct {
	UserID int64
	Unread int
	Head   int64
}

// NotificationLog reads the notification stream for stream.Feed.
type NotificationLog struct{ db *DB }

// NotificationLog returns the notification stream's reader.
func (db *DB) NotificationLog() NotificationLog { return NotificationLog{db: db} }

// Head returns the position of the newest committed notification.
func (l NotificationLog) Head(ctx context.Context, stream string) (int64, error) {
	return l.db.Head(ctx, stream)
}

// After returns up to limit notifications after position after, oldest
// first, whoever they are for (subscriptions keep their own).
func (l NotificationLog) After(ctx context.Context, _ string, after int64, limit int) ([]*models.Notification, error) {
	var out []*models.Notification
	err := l.db.gorm.WithContext(ctx).Where("id > ?", after).Order("id ASC").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, translate(err, "list notifications")
	}
	for _, n := range out {
		n.CreatedAt = n.CreatedAt.UTC()
	}
	return out, nil
}

// inboxAfterQuery reads a page of one inbox in stream order: the
// notifications addressed to the user and those addressed to everyone since
// their second, each an index range of idx_notifications_inbox, merged.
const inboxAfterQuery = `SELECT * FROM (SELECT * FROM notifications WHERE recipient_id = ? AND id > ? ORDER BY id LIMIT ?) direct
UNION ALL
SELECT * FROM (SELECT * FROM notifications WHERE recipient_id IS NULL AND id > ? AND created_at >= ? ORDER BY id LIMIT ?) everyone
ORDER BY id LIMIT ?`

// InboxAfter returns up to limit notifications of u's inbox after position
// after, oldest first, reading only that inbox (not everyone's), and the
// position through which the inbox has been read: when fewer than limit
// came back, every notification of u's up to the stream's head as the read
// saw it; otherwise the last one returned.
func (l NotificationLog) InboxAfter(ctx context.Context, u *models.User, after int64, limit int) ([]*models.Notification, int64, error) {
	// Everything up to a head read first is committed, hence in the
	// snapshot of the read that follows.
	head, err := l.db.Head(ctx, models.NotificationStream)
	if err != nil {
		return nil, 0, err
	}
	var out []*models.Notification
	since := u.CreatedAt.UTC().Truncate(time.Second)
	err = l.db.gorm.WithContext(ctx).Raw(inboxAfterQuery, u.ID, after, limit, after, since, limit, limit).Scan(&out).Error
	if err != nil {
		return nil, 0, translate(err, "list notifications of an inbox")
	}
	through := max(after, head)
	for _, n := range out {
		n.CreatedAt = n.CreatedAt.UTC()
		through = max(through, n.ID)
	}
	if len(out) == limit {
		through = out[len(out)-1].ID
	}
	return out, through, nil
}
