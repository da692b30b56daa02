// Package accounts signs users in and keeps their sessions: guest sign-in,
// operators' sessions, refreshing a token within its session's lifetime,
// signing out and revoking sessions (Sessions, which also tells every
// replica), the signed-in caller's user record, and finding other users by
// name.
//
// A session starts at sign-in and has an absolute end: SessionMaxAge after
// a guest's sign-in, the requested lifetime for an operator's token. Every
// token names its session and never outlives it: refreshing issues a token
// of the same session, with the same roles, that ends no later than the
// session does.
package accounts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/store"
)

// DefaultTokenTTL is how long a token issued by SignIn or Refresh lasts
// unless Options say otherwise (or its session ends first).
const DefaultTokenTTL = 30 * 24 * time.Hour

// DefaultSessionMaxAge is a guest session's lifetime unless Options say
// otherwise.
const DefaultSessionMaxAge = 30 * 24 * time.Hour

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// GuestSignIn allows SignIn; without it, SignIn is models.Forbidden.
	GuestSignIn bool
	// TokenTTL is how long a token issued by SignIn or Refresh is valid,
	// unless its session ends first. Default DefaultTokenTTL.
	TokenTTL time.Duration
	// SessionMaxAge is the absolute lifetime of a guest's session, from
	// sign-in: no refresh extends it. Default DefaultSessionMaxAge.
	SessionMaxAge time.Duration
	// Now is the clock; nil means time.Now. Give the token signer the same.
	Now func() time.Time
	// SignInRate limits guest sign-ins per client address (keyed by
	// request.ClientKey, so per /64 for IPv6); nil: no limit.
	SignInRate *ratelimit.Keyed
}

// Service signs users in and answers who they are.
type Service struct {
	db       *store.DB
	tokens   *auth.Tokens
	sessions *Sessions
	opts     Options

	usersMu sync.Mutex
	users   map[int64]*models.User // found by Current: a user record never changes
}

// maxKnownUsers bounds the users Current keeps (about 100 bytes each);
// past it, it forgets them all and starts again.
const maxKnownUsers = 10000

// New returns a Service storing users and sessions in db, issuing tokens
// with tokens and ending sessions through sessions.
func New(db *store.DB, tokens *auth.Tokens, sessions *Sessions, opts Options) *Service {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.SessionMaxAge <= 0 {
		opts.SessionMaxAge = DefaultSessionMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{db: db, tokens: tokens, sessions: sessions, opts: opts}
}

// SignIn creates a new user named name (trimmed, see models.UserName) and
// starts a session for them, without roles, lasting SessionMaxAge:
// models.Forbidden when guest sign-in is off, models.BadUserInput for an
// invalid name, models.RateLimited when the client's address is over
// Options.SignInRate. Only a session returned has created a user.
func (s *Service) SignIn(ctx context.Context, name string) (*models.Session, error) {
	if !s.opts.GuestSignIn {
		return nil, models.Errorf(models.Forbidden, "guest sign-in is turned off on this server")
	}
	name, err := models.UserName(name)
	if err != nil {
		return nil, err
	}
	if ok, wait := s.opts.SignInRate.Take(ctx, request.ClientKey(ctx)); !ok {
		return nil, models.Errorf(models.RateLimited, "too many sign-ins from this address; try again in %d s", int(math.Ceil(wait.Seconds())))
	}
	user, err := s.db.CreateUser(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.start(ctx, user, nil, s.opts.SessionMaxAge, s.opts.TokenTTL)
}

// Mint starts an operator's session for user with roles, lasting ttl
// exactly (no other lifetime caps it), and returns its first token, valid
// for the whole session.
func (s *Service) Mint(ctx context.Context, user *models.User, roles []models.Role, ttl time.Duration) (*models.Session, error) {
	if ttl < time.Second {
		return nil, models.Errorf(models.BadUserInput, "a session lasts at least a second")
	}
	return s.start(ctx, user, roles, ttl, ttl)
}

// start records a new session of user with roles that ends after
// lifetime, and issues its first token, valid for tokenTTL (at most the
// session's lifetime). Times are whole seconds, as tokens record them.
func (s *Service) start(ctx context.Context, user *models.User, roles []models.Role, lifetime, tokenTTL time.Duration) (*models.Session, error) {
	var id [models.SessionIDLength / 2]byte
	_, _ = rand.Read(id[:])
	now := s.opts.Now().UTC().Truncate(time.Second)
	rec := &models.SessionRecord{ID: hex.EncodeToString(id[:]), UserID: user.ID, Roles: roles,
		CreatedAt: now, ExpiresAt: now.Add(lifetime).Truncate(time.Second)}
	if err := s.db.CreateSession(ctx, rec); err != nil {
		return nil, err
	}
	return s.issue(user, rec, now.Add(tokenTTL))
}

// issue returns a token of session rec for user, valid until exp or the
// session's end, whichever comes first.
func (s *Service) issue(user *models.User, rec *models.SessionRecord, exp time.Time) (*models.Session, error) {
	if exp.After(rec.ExpiresAt) {
		exp = rec.ExpiresAt
	}
	token, exp, err := s.tokens.Issue(user, rec.Roles, rec.ID, exp)
	if err != nil {
		return nil, err
	}
	return &models.Session{Token: token, ExpiresAt: exp, User: user, ID: rec.ID}, nil
}

// Refresh returns a new token of the caller's session: with the roles the
// session was granted and a new expiry TokenTTL from now, but never after
// the session's end (so a one-hour operator token stays a one-hour
// token). A session that was signed out, revoked or has reached its end is
// models.Unauthenticated, as is a caller whose user is gone (see Current).
func (s *Service) Refresh(ctx context.Context, p *models.Principal) (*models.Session, error) {
	rec, err := s.db.Session(ctx, p.SessionID)
	if models.ErrorCode(err) == models.NotFound {
		return nil, errSessionEnded
	}
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if rec.UserID != p.User.ID {
		return nil, models.Errorf(models.Unauthenticated, "invalid token")
	}
	if rec.Ended(now) {
		return nil, errSessionEnded
	}
	user, err := s.Current(ctx, p)
	if err != nil {
		return nil, err
	}
	return s.issue(user, rec, now.Add(s.opts.TokenTTL))
}

// SignOut ends the caller's session: every token of it is refused from
// now on, on every replica within seconds, and its WebSockets are closed.
// Signing out twice is no error.
func (s *Service) SignOut(ctx context.Context, p *models.Principal) error {
	_, err := s.sessions.Revoke(ctx, p.SessionID)
	if models.ErrorCode(err) == models.NotFound {
		return errSessionEnded
	}
	return err
}

// Current returns the user record of the caller p; a token whose user no
// longer exists is models.Unauthenticated. A user's record never changes
// once created, so the records found are kept (up to maxKnownUsers) and a
// caller's next request reads none: every mutation needs its caller.
func (s *Service) Current(ctx context.Context, p *models.Principal) (*models.User, error) {
	s.usersMu.Lock()
	known := s.users[p.User.ID]
	s.usersMu.Unlock()
	if known != nil {
		u := *known
		return &u, nil
	}
	u, err := s.db.User(ctx, p.User.ID)
	if models.ErrorCode(err) == models.NotFound {
		return nil, models.Errorf(models.Unauthenticated, "the user of this token no longer exists; sign in again")
	}
	if err != nil {
		return nil, err
	}
	s.usersMu.Lock()
	if len(s.users) >= maxKnownUsers || s.users == nil {
		s.users = make(map[int64]*models.User)
	}
	kept := *u
	s.users[u.ID] = &kept
	s.usersMu.Unlock()
	return u, nil
}

// Search returns up to limit users whose name contains search (trimmed,
// case-insensitive), by name, leaving out the user except. A search longer
// than a name can be is models.BadUserInput.
func (s *Service) Search(ctx context.Context, search string, limit int, except int64) ([]*models.User, error) {
	search = strings.TrimSpace(search)
	if utf8.RuneCountInString(search) > models.MaxNameLength {
		return nil, models.Errorf(models.BadUserInput, "search is longer than a name can be")
	}
	return s.db.SearchUsers(ctx, search, limit, except)
}
