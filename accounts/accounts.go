// Package accounts signs users in and keeps their sessions: guest sign-in,
// refreshing a token, the signed-in caller's user record, and finding other
// users by name.
package accounts

import (
	"context"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/store"
)

// DefaultTokenTTL is how long a token issued by SignIn or Refresh lasts
// unless Options say otherwise.
const DefaultTokenTTL = 30 * 24 * time.Hour

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// GuestSignIn allows SignIn; without it, SignIn is models.Forbidden.
	GuestSignIn bool
	// TokenTTL is how long a token issued by SignIn or Refresh is valid.
	// Default DefaultTokenTTL.
	TokenTTL time.Duration
	// SignInRate limits guest sign-ins per client address (keyed by
	// request.ClientKey, so per /64 for IPv6); nil: no limit.
	SignInRate *ratelimit.Keyed
}

// Service signs users in and answers who they are.
type Service struct {
	db     *store.DB
	tokens *auth.Tokens
	opts   Options
}

// New returns a Service storing users in db and issuing tokens with tokens.
func New(db *store.DB, tokens *auth.Tokens, opts Options) *Service {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	return &Service{db: db, tokens: tokens, opts: opts}
}

// SignIn creates a new user named name (trimmed, see models.UserName) and
// returns a session for them: models.Forbidden when guest sign-in is off,
// models.BadUserInput for an invalid name, models.RateLimited when the
// client's address is over Options.SignInRate. Only a session returned
// has created a user.
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
	return s.session(user, nil)
}

// Refresh returns a new session for the caller p, with the same roles and a
// new expiry (see Current for a caller whose user is gone).
func (s *Service) Refresh(ctx context.Context, p *models.Principal) (*models.Session, error) {
	user, err := s.Current(ctx, p)
	if err != nil {
		return nil, err
	}
	return s.session(user, p.Roles)
}

// session issues a token for user with roles.
func (s *Service) session(user *models.User, roles []models.Role) (*models.Session, error) {
	token, exp, err := s.tokens.Issue(user, roles, s.opts.TokenTTL)
	if err != nil {
		return nil, err
	}
	return &models.Session{Token: token, ExpiresAt: exp, User: user}, nil
}

// Current returns the user record of the caller p; a token whose user no
// longer exists is models.Unauthenticated.
func (s *Service) Current(ctx context.Context, p *models.Principal) (*models.User, error) {
	u, err := s.db.User(ctx, p.User.ID)
	if models.ErrorCode(err) == models.NotFound {
		return nil, models.Errorf(models.Unauthenticated, "the user of this token no longer exists; sign in again")
	}
	return u, err
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
