// Package auth identifies callers. It issues and verifies the signed bearer
// tokens (HS256 JWTs) that carry a user and roles, reads them from the HTTP
// Authorization header and from the WebSocket connection_init payload, and
// keeps the caller in the request context.
//
// Tokens are accepted only from those two places, never from a URL, where
// they would end up in logs and browser history.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/switchboardhq/switchboard/models"
)

// Issuer names the tokens this server signs; a token with another issuer is
// refused.
const Issuer = "switchboard"

// MinKeyLength is the shortest signing key accepted, in bytes.
const MinKeyLength = 32

// Tokens signs and verifies bearer tokens with one HS256 key, and asks the
// server's session records (see Sessions) whether a token's session still
// stands.
type Tokens struct {
	key      []byte
	now      func() time.Time
	sessions Sessions
	verified *lru.Cache[string, *models.Principal] // see Verify
}

// leeway is how far the clocks of the signer and the verifier may differ.
const leeway = 5 * time.Second

// verifiedTokens is how many verified tokens Verify remembers.
const verifiedTokens = 4096

// NewTokens returns a Tokens signing with key (at least MinKeyLength bytes).
// now is the clock; nil means time.Now. It checks no session records until
// WithSessions gives it some.
func NewTokens(key []byte, now func() time.Time) (*Tokens, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("signing key is %d bytes; at least %d are needed", len(key), MinKeyLength)
	}
	if now == nil {
		now = time.Now
	}
	verified, err := lru.New[string, *models.Principal](verifiedTokens)
	if err != nil {
		return nil, err
	}
	return &Tokens{key: key, now: now, verified: verified}, nil
}

// Sessions is what authenticating a token asks of the server's session
// records.
type Sessions interface {
	// Check returns nil when session id of user stands (it exists, names
	// that user and was not revoked), a models.Unauthenticated error when it
	// does not, and another error (models.Unavailable) when it cannot tell.
	Check(ctx context.Context, id string, user int64) error
}

// WithSessions returns a Tokens like t whose Authenticate (and so its
// Middleware and ConnectionInit) also checks each token's session with s.
func (t *Tokens) WithSessions(s Sessions) *Tokens {
	c := *t
	c.sessions = s
	return &c
}

// claims is a token's payload.
type claims struct {
	jwt.RegisteredClaims
	Name    string        `json:"name"`
	Roles   []models.Role `json:"roles,omitempty"`
	Session string        `json:"sid"`
}

// Issue returns a token of session sid for user with roles, valid until exp,
// and that expiry as the token records it (exp truncated to the second, so
// never later than exp). An expiry that is not in the future is an error.
func (t *Tokens) Issue(user *models.User, roles []models.Role, sid string, exp time.Time) (string, time.Time, error) {
	now := t.now().UTC().Truncate(time.Second)
	exp = exp.UTC().Truncate(time.Second)
	if !exp.After(now) {
		return "", time.Time{}, fmt.Errorf("issue token: expiry %s is not after %s", exp.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if sid == "" {
		return "", time.Time{}, errors.New("issue token: no session")
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   strconv.FormatInt(user.ID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        hex.EncodeToString(jti[:]),
		},
		Name:    user.Name,
		Roles:   roles,
		Session: sid,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// ErrInvalidToken is the cause behind every refused token; the client sees
// only models.Unauthenticated and a short reason.
var ErrInvalidToken = errors.New("auth: invalid token")

// Verify checks a token's signature, algorithm, issuer and validity period
// and returns the principal it names; it does not look at the session (see
// Authenticate). A refused token is a models.Unauthenticated error whose
// message says why in general terms. A token without a session (signed
// before sessions were recorded) is refused: it could never be revoked.
func (t *Tokens) Verify(token string) (*models.Principal, error) {
	// A token is checked once: what it says cannot change, only expire.
	// The tokens remembered are those that passed, so a client sending
	// garbage costs a full check each time and takes no place here.
	if p, ok := t.verified.Get(token); ok {
		if t.now().Before(p.ExpiresAt.Add(leeway)) {
			c := *p
			return &c, nil
		}
		t.verified.Remove(token)
	}
	p, err := t.verify(token)
	if err != nil {
		return nil, err
	}
	t.verified.Add(strings.Clone(token), p) // not the request's header memory
	c := *p
	return &c, nil
}

// verify is Verify without remembering.
func (t *Tokens) verify(token string) (*models.Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		reason := "invalid token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			reason = "token expired"
		}
		return nil, models.E("verify token", models.Unauthenticated, fmt.Errorf("%w: %w", ErrInvalidToken, err), "%s", reason)
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
		return nil, models.E("verify token", models.Unauthenticated, ErrInvalidToken, "invalid token")
	}
	if !models.ValidSessionID(c.Session) {
		return nil, models.E("verify token", models.Unauthenticated, ErrInvalidToken, "token without a session: sign in again")
	}
	return &models.Principal{
		User:      models.User{ID: id, Name: c.Name},
		Roles:     c.Roles,
		ExpiresAt: c.ExpiresAt.UTC(),
		SessionID: c.Session,
	}, nil
}

// Authenticate verifies token (see Verify) and checks that its session
// stands (see WithSessions): a signed-out or revoked session is a
// models.Unauthenticated error ("session ended"), a session that cannot be
// checked now a models.Unavailable one.
func (t *Tokens) Authenticate(ctx context.Context, token string) (*models.Principal, error) {
	p, err := t.Verify(token)
	if err != nil || t.sessions == nil {
		return p, err
	}
	if err := t.sessions.Check(ctx, p.SessionID, p.User.ID); err != nil {
		return nil, err
	}
	return p, nil
}

// FromHeader extracts the token of an "Authorization: Bearer <token>" value.
// ok is false when the value is empty; a value of another scheme is an
// invalid token.
func FromHeader(value string) (token string, ok bool, err error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", false, nil
	}
	scheme, token, found := strings.Cut(value, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", true, models.E("read authorization", models.Unauthenticated, ErrInvalidToken, `authorization must be "Bearer <token>"`)
	}
	return strings.TrimSpace(token), true, nil
}

type ctxKey struct{ name string }

var principalKey = &ctxKey{"principal"}

// WithPrincipal returns ctx carrying the authenticated caller p.
func WithPrincipal(ctx context.Context, p *models.Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// PrincipalFrom returns the authenticated caller of ctx, if any.
func PrincipalFrom(ctx context.Context) (*models.Principal, bool) {
	p, ok := ctx.Value(principalKey).(*models.Principal)
	return p, ok && p != nil
}

// Require returns the authenticated caller of ctx or a models.Unauthenticated
// error.
func Require(ctx context.Context) (*models.Principal, error) {
	if p, ok := PrincipalFrom(ctx); ok {
		return p, nil
	}
	return nil, models.Errorf(models.Unauthenticated, "sign in first: this operation needs a bearer token")
}
