package models

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Room is a chat room. A public room is open to everyone; a direct room has
// exactly two members (see RoomMember) and is invisible to anyone else.
type Room struct {
	ID     int64  `json:"id" gorm:"primaryKey"`
	Name   string `json:"name" gorm:"size:200;not null"`
	Direct bool   `json:"direct" gorm:"not null;default:false;index:idx_rooms_listing,priority:1"`
	// Key makes rooms unique: "name:<lower-case name>" for a public room,
	// "direct:<low id>:<high id>" for a direct one.
	Key       string    `json:"-" gorm:"column:room_key;size:191;not null;uniqueIndex"`
	CreatedAt time.Time `json:"createdAt" gorm:"not null"`
	// ActiveAt is when the room was last active: the time of its newest
	// message, or its creation before the first. Room lists sort by it.
	ActiveAt time.Time `json:"activeAt" gorm:"not null;default:'1970-01-01 00:00:00';index:idx_rooms_listing,priority:2"`
	// Seen, when set, holds what the room's other fields were for one
	// viewer when the room was read for them (by a roomsChanged watcher,
	// with every other watcher's in a few queries); nil: they are read
	// when asked. It is never stored, nor kept beyond one delivery.
	Seen *RoomSeen `json:"-" gorm:"-"`
}

// RoomSeen is a room's fields that depend on other rows or on the viewer,
// as one viewer saw them at one moment.
type RoomSeen struct {
	Members     []*User  // a direct room's two members; nil for a public room
	UnreadCount int      // the viewer's unread messages
	LastMessage *Message // the newest message; nil when none
	Joined      bool     // whether the viewer is in the room
	Viewer      int64    // the viewer's user id
}

// RoomMember is one member of a direct room.
type RoomMember struct {
	RoomID int64 `gorm:"primaryKey;autoIncrement:false"`
	UserID int64 `gorm:"primaryKey;autoIncrement:false;index"`
}

// RoomRead is how far a user has read a room: every message up to Seq. A
// user with a RoomRead of a public room has joined it (created it, posted
// to it or read it) since JoinedAt (nil: since before that was recorded).
type RoomRead struct {
	UserID   int64 `gorm:"primaryKey;autoIncrement:false"`
	RoomID   int64 `gorm:"primaryKey;autoIncrement:false"`
	Seq      int64 `gorm:"not null"`
	JoinedAt *time.Time
}

// RoomUser is one user in one room: the key of what each user has of a
// room, such as their unread count.
type RoomUser struct{ Room, User int64 }

// RoomPlace is where a room sits in a room list: the rooms the viewer has
// joined (see RoomRead; a direct room always) first, then the most recently
// active (ActiveAt), then the newest (the higher ID).
type RoomPlace struct {
	Joined   bool
	ActiveAt time.Time
	ID       int64
}

// Before reports whether p comes before q in a room list.
func (p RoomPlace) Before(q RoomPlace) bool {
	switch {
	case p.Joined != q.Joined:
		return p.Joined
	case !p.ActiveAt.Equal(q.ActiveAt):
		return p.ActiveAt.After(q.ActiveAt)
	}
	return p.ID > q.ID
}

// ListedRoom is a room of a room list, with its place in the list.
type ListedRoom struct {
	Room  *Room
	Place RoomPlace
}

// RoomListCursor is where a room list continues: after the room at After,
// in the list as it was at AsOf, the moment its first page was read.
type RoomListCursor struct {
	AsOf  time.Time
	After RoomPlace
}

// RoomSearch trims a room list search and checks that it is at most
// MaxRoomNameLength characters (a longer one matches nothing) of valid
// UTF-8; "" searches nothing out.
func RoomSearch(search string) (string, error) {
	search = strings.TrimSpace(search)
	if search == "" {
		return "", nil
	}
	return boundedText("search", search, MaxRoomNameLength)
}

// GeneralRoom is the public room every installation starts with.
const GeneralRoom = "general"

// PublicRoomKey is the uniqueness key of a public room named name.
func PublicRoomKey(name string) string { return "name:" + strings.ToLower(name) }

// DirectRoomKey is the uniqueness key of the direct room of users a and b,
// the same whichever opens it.
func DirectRoomKey(a, b int64) string {
	return fmt.Sprintf("direct:%d:%d", min(a, b), max(a, b))
}

// RoomStream names the durable stream of a room's messages.
func RoomStream(roomID int64) string { return "room:" + strconv.FormatInt(roomID, 10) }

// RoomOfStream returns the room of a RoomStream name.
func RoomOfStream(stream string) (int64, bool) {
	s, ok := strings.CutPrefix(stream, "room:")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

// Message is one chat message. Messages of a room are numbered 1, 2, 3… in
// commit order (Seq, the position in the room's stream).
type Message struct {
	RoomID    int64     `json:"roomId" gorm:"primaryKey;autoIncrement:false"`
	Seq       int64     `json:"seq" gorm:"primaryKey;autoIncrement:false"`
	Text      string    `json:"text" gorm:"size:2000;not null"`
	AuthorID  int64     `json:"authorId" gorm:"index;not null"`
	Author    *User     `json:"author" gorm:"foreignKey:AuthorID"`
	CreatedAt time.Time `json:"createdAt" gorm:"not null"`
}

// ID is the message's public identifier, "<room>:<seq>": unique across
// rooms, and a resume cursor within its room.
func (m *Message) ID() string { return MessageID(m.RoomID, m.Seq) }

// MessageID formats a message identifier.
func MessageID(roomID, seq int64) string {
	return strconv.FormatInt(roomID, 10) + ":" + strconv.FormatInt(seq, 10)
}

// MessagePosition reads the position in room roomID from a message
// identifier; a bare number is accepted as the position itself.
func MessagePosition(roomID int64, id string) (int64, error) {
	room, seq, found := strings.Cut(id, ":")
	if !found {
		room, seq = strconv.FormatInt(roomID, 10), id
	}
	r, err1 := strconv.ParseInt(room, 10, 64)
	n, err2 := strconv.ParseInt(seq, 10, 64)
	switch {
	case err1 != nil || err2 != nil || n < 0:
		return 0, Errorf(BadUserInput, "after: %q is not a message id", id)
	case r != roomID:
		return 0, Errorf(BadUserInput, "after: message %q is not in room %d", id, roomID)
	}
	return n, nil
}

// MaxMessageLength is the longest message text, in characters.
const MaxMessageLength = 2000

// MessageText trims a message text and checks it is 1..MaxMessageLength
// characters of valid UTF-8 without control characters other than newline
// and tab (see PlainText).
func MessageText(text string) (string, error) {
	return PlainText("text", text, MaxMessageLength)
}

// MaxRoomNameLength is the longest room name, in characters.
const MaxRoomNameLength = 50

// RoomName normalises a room name and checks it is 1..MaxRoomNameLength
// characters, by the rules of user names (see DisplayName): so a look-alike
// of a room's name ("Ｇｅｎｅｒａｌ") is that name, and is refused as in use.
func RoomName(name string) (string, error) {
	return DisplayName("name", name, MaxRoomNameLength)
}

// boundedText trims s and checks it is 1..limit characters of valid UTF-8.
func boundedText(field, s string, limit int) (string, error) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return "", Errorf(BadUserInput, "%s is not valid UTF-8", field)
	case n == 0:
		return "", Errorf(BadUserInput, "%s must not be empty", field)
	case n > limit:
		return "", Errorf(BadUserInput, "%s is %d characters long; the limit is %d", field, n, limit)
	}
	return s, nil
}

// MessageConnection is one page of a room's history, oldest first.
type MessageConnection struct {
	Edges    []*MessageEdge
	PageInfo *PageInfo
}

// MessageEdge is a message in a page, with its opaque cursor.
type MessageEdge struct {
	Cursor string
	Node   *Message
}

// RoomConnection is one page of a room list.
type RoomConnection struct {
	Edges    []*RoomEdge
	PageInfo *PageInfo
}

// RoomEdge is a room in a page, with its opaque cursor.
type RoomEdge struct {
	Cursor string
	Node   *Room
}

// Presence is who is online in a room, in the order they came online.
type Presence struct {
	RoomID int64   `json:"roomId"`
	Online []*User `json:"users"`
}

// Online lists hold at most MaxOnlineList users, DefaultOnlineList unless
// asked otherwise: any number of users can come online in a room.
const (
	DefaultOnlineList = 50
	MaxOnlineList     = 100
)

// Users returns the first first users online (DefaultOnlineList when
// nil), 0..MaxOnlineList.
func (p *Presence) Users(first *int) ([]*User, error) {
	n := DefaultOnlineList
	if first != nil {
		n = *first
	}
	if n < 0 || n > MaxOnlineList {
		return nil, Errorf(BadUserInput, "first must be between 0 and %d (got %d)", MaxOnlineList, n)
	}
	return p.Online[:min(n, len(p.Online))], nil
}

// Count is how many users are online.
func (p *Presence) Count() int { return len(p.Online) }

// TypingEvent says a member started or stopped typing in a room.
type TypingEvent struct {
	RoomID    int64     `json:"roomId"`
	User      *User     `json:"user"`
	Typing    bool      `json:"typing"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// EventTime is when the message was created (for delivery latency).
func (x *Message) EventTime() time.Time { return x.CreatedAt }
