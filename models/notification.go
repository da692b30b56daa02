package models

import (
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// NotificationStream names the durable stream of every notification. Each
// user's inbox is the part of it addressed to them or to everyone.
const NotificationStream = "notifications"

// Level is a notification's severity.
type Level string

// The notification levels.
const (
	LevelInfo    Level = "info"
	LevelSuccess Level = "success"
	LevelWarning Level = "warning"
	LevelError   Level = "error"
)

// Notification is one notification, to one user (RecipientID) or to
// everyone (RecipientID nil). Its ID is its position in NotificationStream.
// The index on (RecipientID, ID) serves the reads of one inbox in stream
// order: replays and unread counts.
type Notification struct {
	ID          int64     `json:"id" gorm:"primaryKey;autoIncrement:false;index:idx_notifications_inbox,priority:2"`
	RecipientID *int64    `json:"recipientId" gorm:"index:idx_notifications_inbox,priority:1"`
	Title       string    `json:"title" gorm:"size:200;not null"`
	Body        string    `json:"body" gorm:"size:2000;not null"`
	Level       Level     `json:"level" gorm:"size:16;not null"`
	Link        *string   `json:"link" gorm:"size:2000"`
	CreatedAt   time.Time `json:"createdAt" gorm:"not null"`
	// Read is whether the user who asked has read it (set by the queries
	// that know the reader; false on live events, which are new).
	Read bool `json:"-" gorm:"-"`
}

// Broadcast reports whether the notification is for everyone.
func (n *Notification) Broadcast() bool { return n.RecipientID == nil }

// InInbox reports whether n belongs to u's inbox, the notifications u may
// see, count and mark: those addressed to u whenever they were sent, and
// those to everyone sent since the second u was created (a broadcast from
// before a user existed is not theirs). The store's queries apply the same
// rule in SQL; its TestInbox proves the two agree.
func (n *Notification) InInbox(u *User) bool {
	if n.RecipientID != nil {
		return *n.RecipientID == u.ID
	}
	return !n.CreatedAt.Before(u.CreatedAt.UTC().Truncate(time.Second))
}

// NotificationRead records that a user has read a notification.
type NotificationRead struct {
	UserID         int64 `gorm:"primaryKey;autoIncrement:false"`
	NotificationID int64 `gorm:"primaryKey;autoIncrement:false"`
}

// NotificationInput is what sendNotification takes.
type NotificationInput struct {
	UserID *string
	Title  string
	Body   string
	Level  *Level
	Link   *string
}

// ValidNotification checks and normalises a notification's fields: title
// 1..200 and body 0..2000 characters, a known level (default info), and an
// http(s) or site-relative link.
func ValidNotification(in *NotificationInput) (*Notification, error) {
	title, err := boundedText("title", in.Title, 200)
	if err != nil {
		return nil, err
	}
	body := strings.TrimSpace(in.Body)
	if !utf8.ValidString(body) || utf8.RuneCountInString(body) > 2000 {
		return nil, Errorf(BadUserInput, "body must be at most 2000 characters of valid UTF-8")
	}
	n := &Notification{Title: title, Body: body, Level: LevelInfo}
	if in.Level != nil {
		switch *in.Level {
		case LevelInfo, LevelSuccess, LevelWarning, LevelError:
			n.Level = *in.Level
		default:
			return nil, Errorf(BadUserInput, "level must be info, success, warning or error")
		}
	}
	if in.Link != nil && *in.Link != "" {
		if !validLink(*in.Link) {
			return nil, Errorf(BadUserInput, "link must be an http(s) URL or a path starting with /")
		}
		n.Link = in.Link
	}
	return n, nil
}

// validLink reports whether link is an http(s) URL with a host or a path on
// this site. Browsers read "/\host" as "//host", another site, so a path
// may not start so (the web client refuses such links too).
func validLink(link string) bool {
	u, err := url.Parse(link)
	if err != nil || len(link) > 2000 {
		return false
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host != ""
	case "":
		return u.Host == "" && strings.HasPrefix(link, "/") && !strings.HasPrefix(link, "/\\")
	}
	return false
}

// NotificationConnection is one page of a user's notifications, newest
// first.
type NotificationConnection struct {
	Edges    []*NotificationEdge
	PageInfo *PageInfo
}

// NotificationEdge is a notification in a page, with its opaque cursor.
type NotificationEdge struct {
	Cursor string
	Node   *Notification
}

// EventTime is when the notification was created (for delivery latency).
func (x *Notification) EventTime() time.Time { return x.CreatedAt }
