package models

import (
	"slices"
	"strings"
	"time"
)

// User is a person or service known to Switchboard. Users are created by
// guest sign-in or by an operator minting a token; names need not be unique.
type User struct {
	ID        int64     `json:"id" gorm:"primaryKey"`
	Name      string    `json:"name" gorm:"size:200;not null"`
	CreatedAt time.Time `json:"-"`
}

// Session is what signing in returns: a bearer token, its expiry and the user
// it identifies, and the id of the session the token belongs to (see
// SessionRecord), which the API does not show.
type Session struct {
	Token     string
	ExpiresAt time.Time
	User      *User
	ID        string
}

// Role grants a capability beyond those of every signed-in user.
type Role string

// The roles a token can carry.
const (
	// RoleAdmin sends notifications, records KPIs and manages rooms.
	RoleAdmin Role = "admin"
	// RolePublisher records KPIs.
	RolePublisher Role = "publisher"
)

// ParseRole returns the Role named s, or a BadUserInput error.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleAdmin, RolePublisher:
		return r, nil
	}
	return "", Errorf(BadUserInput, "unknown role %q (known: admin, publisher)", s)
}

// Principal is the authenticated caller of an operation: a user, the roles its
// token grants, when that token expires and the session it belongs to.
type Principal struct {
	User      User
	Roles     []Role
	ExpiresAt time.Time
	SessionID string
}

// Has reports whether the principal holds role r.
func (p *Principal) Has(r Role) bool { return p != nil && slices.Contains(p.Roles, r) }

// MaxNameLength is the longest display name, in characters.
const MaxNameLength = 50

// UserName normalises a user's display name and checks it is
// 1..MaxNameLength characters: see DisplayName for what is normalised and
// what is refused.
func UserName(name string) (string, error) {
	return DisplayName("name", name, MaxNameLength)
}
