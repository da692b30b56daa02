package accounts_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/accounts"
	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// clock is a settable time source shared by a Service and its tokens.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a Service over a fresh SQLite database, with its token signer,
// its sessions and their clock.
type fixture struct {
	svc      *accounts.Service
	tokens   *auth.Tokens
	sessions *accounts.Sessions
	db       *store.DB
	clock    *clock
}

// newService returns a fixture whose Service has opts (and the fixture's
// clock).
func newService(t *testing.T, opts accounts.Options) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), db: storetest.Open(t, store.SQLite)}
	opts.Now = f.clock.now
	tokens, err := auth.NewTokens([]byte(strings.Repeat("k", 32)), f.clock.now)
	require.NoError(t, err)
	f.sessions = accounts.NewSessions(f.db, nil, accounts.SessionsOptions{Now: f.clock.now})
	f.tokens = tokens.WithSessions(f.sessions)
	f.svc = accounts.New(f.db, f.tokens, f.sessions, opts)
	return f
}

// principal authenticates token as the HTTP middleware does.
func (f *fixture) principal(t *testing.T, token string) *models.Principal {
	t.Helper()
	p, err := f.tokens.Authenticate(t.Context(), token)
	require.NoError(t, err)
	return p
}

func TestSignIn(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true, TokenTTL: time.Hour, SessionMaxAge: 3 * time.Hour})
	s, err := f.svc.SignIn(t.Context(), "  ada ")
	require.NoError(t, err)
	assert.Equal(t, "ada", s.User.Name, "trimmed")
	assert.Equal(t, f.clock.now().Add(time.Hour), s.ExpiresAt)
	p, err := f.tokens.Verify(s.Token)
	require.NoError(t, err)
	assert.Equal(t, s.User.ID, p.User.ID)
	assert.Empty(t, p.Roles, "a guest has no roles")
	assert.Equal(t, s.ID, p.SessionID, "the token names its session")
	rec, err := f.db.Session(t.Context(), s.ID)
	require.NoError(t, err)
	assert.Equal(t, &models.SessionRecord{ID: s.ID, UserID: s.User.ID, CreatedAt: f.clock.now(), ExpiresAt: f.clock.now().Add(3 * time.Hour)}, rec,
		"the session is recorded, ending SessionMaxAge after sign-in")

	again, err := f.svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	assert.NotEqual(t, s.User.ID, again.User.ID, "each sign-in is a new user")
	assert.NotEqual(t, s.ID, again.ID, "and a new session")

	for _, name := range []string{"", "  ", strings.Repeat("n", models.MaxNameLength+1), "a\x00b"} {
		_, err := f.svc.SignIn(t.Context(), name)
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "name %q: %v", name, err)
	}

	off := newService(t, accounts.Options{})
	_, err = off.svc.SignIn(t.Context(), "ada")
	assert.Equal(t, models.Forbidden, models.ErrorCode(err))
	assert.EqualError(t, err, "guest sign-in is turned off on this server")
}

// TestSignInsPerAddressAreLimited: guest sign-ins are counted per client
// address (per /64 for IPv6); one over the limit is RATE_LIMITED and
// creates no user, and other addresses are not affected.
func TestSignInsPerAddressAreLimited(t *testing.T) {
	now := time.Unix(1000, 0)
	rate := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 2.0 / 60, Burst: 2}, func() time.Time { return now })
	svc := newService(t, accounts.Options{GuestSignIn: true, SignInRate: rate}).svc
	from := func(addr string) error {
		_, err := svc.SignIn(request.WithClientAddr(t.Context(), addr), "guest")
		return err
	}
	require.NoError(t, from("192.0.2.1:1000"))
	require.NoError(t, from("192.0.2.1:2000"), "the port does not matter")
	err := from("192.0.2.1:3000")
	assert.Equal(t, models.RateLimited, models.ErrorCode(err))
	assert.EqualError(t, err, "too many sign-ins from this address; try again in 30 s")
	require.NoError(t, from("192.0.2.2:1000"), "another address has its own budget")

	require.NoError(t, from("[2001:db8::1]:1"))
	require.NoError(t, from("[2001:db8::2]:1"))
	assert.Equal(t, models.RateLimited, models.ErrorCode(from("[2001:db8::ffff:1]:1")), "one /64 is one client")
	require.NoError(t, from("[2001:db8:0:1::1]:1"), "the next /64 is another")

	now = now.Add(30 * time.Second)
	require.NoError(t, from("192.0.2.1:1000"), "a sign-in back every 30 s")

	users, err := svc.Search(t.Context(), "guest", 100, 0)
	require.NoError(t, err)
	assert.Len(t, users, 7, "the refused sign-ins created nobody")
	assert.EqualValues(t, 2, rate.Refused())
}

func TestRefreshAndCurrent(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true})
	s, err := f.svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	assert.Equal(t, f.clock.now().Add(accounts.DefaultTokenTTL), s.ExpiresAt, "the default lifetime")

	p := f.principal(t, s.Token)
	me, err := f.svc.Current(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, s.User, me)
	f.clock.advance(time.Minute)
	r, err := f.svc.Refresh(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, s.User, r.User)
	assert.Equal(t, s.ID, r.ID, "the same session")
	assert.Equal(t, s.ExpiresAt, r.ExpiresAt, "the default session ends when its first token does: refreshing cannot extend it")

	gone := &models.Principal{User: models.User{ID: 999, Name: "gone"}, SessionID: s.ID}
	_, err = f.svc.Current(t.Context(), gone)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
	assert.EqualError(t, err, "the user of this token no longer exists; sign in again")
	_, err = f.svc.Refresh(t.Context(), gone)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err), "a session of another user")
}

// TestCurrentReadsAUserOnce: a caller's user record is read once, not on
// each of its requests (every mutation asks for it).
func TestCurrentReadsAUserOnce(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true})
	s, err := f.svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	p := f.principal(t, s.Token)
	first, err := f.svc.Current(t.Context(), p)
	require.NoError(t, err)
	before := f.db.Statements()
	for range 10 {
		me, err := f.svc.Current(t.Context(), p)
		require.NoError(t, err)
		assert.Equal(t, first, me)
		assert.NotSame(t, first, me, "each caller gets a record of its own")
	}
	assert.Zero(t, f.db.Statements()-before, "statements for 10 more requests of one caller")
}

// TestRefreshStaysWithinTheSession: each refresh gives a token TokenTTL
// from now until that would pass the session's end, then one that ends with
// the session; after the end, or once signed out, refreshing is refused.
func TestRefreshStaysWithinTheSession(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true, TokenTTL: time.Hour, SessionMaxAge: 3 * time.Hour})
	start := f.clock.now()
	s, err := f.svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	p := f.principal(t, s.Token)

	f.clock.advance(30 * time.Minute)
	r, err := f.svc.Refresh(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, start.Add(90*time.Minute), r.ExpiresAt, "TokenTTL from now")

	f.clock.advance(50 * time.Minute)
	r, err = f.svc.Refresh(t.Context(), f.principal(t, r.Token))
	require.NoError(t, err)
	assert.Equal(t, start.Add(140*time.Minute), r.ExpiresAt, "TokenTTL from now again")

	f.clock.advance(time.Hour) // 2h20 in: the next hour would pass the end
	r, err = f.svc.Refresh(t.Context(), f.principal(t, r.Token))
	require.NoError(t, err)
	assert.Equal(t, start.Add(3*time.Hour), r.ExpiresAt, "near its end, a token ends with the session")
	got := f.principal(t, r.Token)
	assert.Equal(t, start.Add(3*time.Hour), got.ExpiresAt, "as the token itself says")

	f.clock.advance(40*time.Minute - time.Second)
	r, err = f.svc.Refresh(t.Context(), f.principal(t, r.Token))
	require.NoError(t, err)
	assert.Equal(t, start.Add(3*time.Hour), r.ExpiresAt, "a second before the end")

	f.clock.advance(time.Second) // the end: the token is still within its leeway
	p, err = f.tokens.Verify(r.Token)
	require.NoError(t, err, "within the leeway")
	_, err = f.svc.Refresh(t.Context(), p)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
	assert.EqualError(t, err, "session ended: sign in again")
	_, err = f.tokens.Authenticate(t.Context(), r.Token)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err), "at its end the session's tokens are refused, leeway or not")
}

// TestMintedSessionKeepsItsEndAndRoles: a one-hour admin token stays a
// one-hour admin token, however often it is refreshed.
func TestMintedSessionKeepsItsEndAndRoles(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true})
	start := f.clock.now()
	ops, err := f.db.CreateUser(t.Context(), "ops")
	require.NoError(t, err)
	s, err := f.svc.Mint(t.Context(), ops, []models.Role{models.RoleAdmin}, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, start.Add(time.Hour), s.ExpiresAt)
	token := s.Token
	for range 5 {
		f.clock.advance(10 * time.Minute)
		r, err := f.svc.Refresh(t.Context(), f.principal(t, token))
		require.NoError(t, err)
		assert.Equal(t, start.Add(time.Hour), r.ExpiresAt, "the session's end, not 30 days")
		p := f.principal(t, r.Token)
		assert.Equal(t, []models.Role{models.RoleAdmin}, p.Roles, "the session's roles")
		assert.Equal(t, s.ID, p.SessionID)
		token = r.Token
	}
	f.clock.advance(10 * time.Minute)
	_, err = f.svc.Refresh(t.Context(), &models.Principal{User: *ops, SessionID: s.ID, Roles: []models.Role{models.RoleAdmin}})
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err), "the roles end with the session")

	long, err := f.svc.Mint(t.Context(), ops, nil, 365*24*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, f.clock.now().Add(365*24*time.Hour), long.ExpiresAt, "an operator's --ttl is capped by nothing else")
	_, err = f.svc.Mint(t.Context(), ops, nil, 0)
	assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
}

// TestSignOut: after signing out, every token of the session is refused
// and cannot be refreshed; other sessions are untouched.
func TestSignOut(t *testing.T) {
	f := newService(t, accounts.Options{GuestSignIn: true})
	s, err := f.svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	other, err := f.svc.SignIn(t.Context(), "bob")
	require.NoError(t, err)
	p := f.principal(t, s.Token)
	r, err := f.svc.Refresh(t.Context(), p)
	require.NoError(t, err)

	require.NoError(t, f.svc.SignOut(t.Context(), p))
	for _, token := range []string{s.Token, r.Token} {
		_, err = f.tokens.Authenticate(t.Context(), token)
		assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
		assert.EqualError(t, err, "session ended: sign in again")
	}
	_, err = f.svc.Refresh(t.Context(), p)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
	assert.NoError(t, f.svc.SignOut(t.Context(), p), "signing out twice is no error")
	f.principal(t, other.Token)
}

func TestSearch(t *testing.T) {
	svc := newService(t, accounts.Options{GuestSignIn: true}).svc
	var ada *models.User
	for _, name := range []string{"Ada", "adam", "bob", "Madame"} {
		s, err := svc.SignIn(t.Context(), name)
		require.NoError(t, err)
		if name == "Ada" {
			ada = s.User
		}
	}
	names := func(us []*models.User) []string {
		out := make([]string, len(us))
		for i, u := range us {
			out[i] = u.Name
		}
		return out
	}
	got, err := svc.Search(t.Context(), " ADA ", 10, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"Ada", "adam", "Madame"}, names(got), "trimmed, any case, by name")
	got, err = svc.Search(t.Context(), "ada", 1, ada.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"adam"}, names(got), "without the caller, up to the limit")

	_, err = svc.Search(t.Context(), strings.Repeat("a", models.MaxNameLength+1), 10, 0)
	assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
	assert.EqualError(t, err, "search is longer than a name can be")
}
