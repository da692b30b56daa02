package models

import "time"

// StatusStream names the durable stream of the public status feed.
const StatusStream = "statuses"

// Status is one post on the public status feed. Its ID is its position in the
// feed's stream: statuses are numbered 1, 2, 3… in commit order, with no gaps,
// so an ID doubles as the resume cursor of statusPosted.
type Status struct {
	ID        int64     `json:"id" gorm:"primaryKey;autoIncrement:false"`
	Text      string    `json:"text" gorm:"size:2000;not null"`
	AuthorID  int64     `json:"authorId" gorm:"index;not null"`
	Author    *User     `json:"author" gorm:"foreignKey:AuthorID"`
	CreatedAt time.Time `json:"createdAt" gorm:"not null"`
}

// MaxStatusLength is the longest status text, in characters (runes).
const MaxStatusLength = 500

// StatusText trims a status text and checks it is 1..MaxStatusLength
// characters of valid UTF-8 without control characters other than newline
// and tab (see PlainText).
func StatusText(text string) (string, error) {
	return PlainText("text", text, MaxStatusLength)
}

// StatusConnection is one page of the status feed, newest first.
type StatusConnection struct {
	Edges    []*StatusEdge
	PageInfo *PageInfo
}

// StatusEdge is a status in a page, with its opaque cursor.
type StatusEdge struct {
	Cursor string
	Node   *Status
}

// PageInfo tells where a page sits in its list (relay convention).
type PageInfo struct {
	HasNextPage     bool
	HasPreviousPage bool
	StartCursor     *string
	EndCursor       *string
}

// EventTime is when the status was created (for delivery latency).
func (x *Status) EventTime() time.Time { return x.CreatedAt }
