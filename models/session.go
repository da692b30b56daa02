package models

import (
	"time"
)

// SessionRecord is the server's record of a session: one sign-in (a guest's
// signIn, or a token minted by an operator) and every token refreshed from
// it. Every token names its session; a token is accepted only while its
// session stands: before ExpiresAt and not revoked.
type SessionRecord struct {
	// ID is the session's random identifier (32 hex digits), carried by
	// every token of the session as its "sid" claim.
	ID string `gorm:"primaryKey;size:32"`
	// UserID is the user the session signs in.
	UserID int64 `gorm:"not null;index"`
	// Roles are the roles granted to the session: every token of it carries
	// exactly these.
	Roles []Role `gorm:"serializer:json;size:200"`
	// CreatedAt is when the session started.
	CreatedAt time.Time `gorm:"not null"`
	// ExpiresAt is the session's absolute end, to the second: no token of
	// the session is valid after it, however it was refreshed.
	ExpiresAt time.Time `gorm:"not null;index"`
	// RevokedAt is when the session was signed out or revoked; nil while it
	// stands.
	RevokedAt *time.Time `gorm:"index"`
}

// TableName is the sessions table's name.
func (SessionRecord) TableName() string { return "sessions" }

// Ended reports whether the session no longer stands at now: revoked, or
// past its end.
func (s *SessionRecord) Ended(now time.Time) bool {
	return s.RevokedAt != nil || !now.Before(s.ExpiresAt)
}

// SessionIDLength is the length of a session id: 16 random bytes in hex.
const SessionIDLength = 32

// ValidSessionID reports whether id has the form of a session id (32
// lower-case hex digits), so that ids from outside (a command line, a broker
// announcement) are checked before they reach the database.
func ValidSessionID(id string) bool {
	if len(id) != SessionIDLength {
		return false
	}
	for i := range len(id) {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
