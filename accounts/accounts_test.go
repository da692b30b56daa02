package accounts_test

import (
	"strings"
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

// newService returns a Service over a fresh SQLite database, and its
// token signer.
func newService(t *testing.T, opts accounts.Options) (*accounts.Service, *auth.Tokens) {
	t.Helper()
	tokens, err := auth.NewTokens([]byte(strings.Repeat("k", 32)), nil)
	require.NoError(t, err)
	return accounts.New(storetest.Open(t, store.SQLite), tokens, opts), tokens
}

func TestSignIn(t *testing.T) {
	svc, tokens := newService(t, accounts.Options{GuestSignIn: true, TokenTTL: time.Hour})
	s, err := svc.SignIn(t.Context(), "  ada ")
	require.NoError(t, err)
	assert.Equal(t, "ada", s.User.Name, "trimmed")
	assert.WithinDuration(t, time.Now().Add(time.Hour), s.ExpiresAt, 2*time.Second)
	p, err := tokens.Verify(s.Token)
	require.NoError(t, err)
	assert.Equal(t, s.User.ID, p.User.ID)
	assert.Empty(t, p.Roles, "a guest has no roles")

	again, err := svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	assert.NotEqual(t, s.User.ID, again.User.ID, "each sign-in is a new user")

	for _, name := range []string{"", "  ", strings.Repeat("n", models.MaxNameLength+1), "a\x00b"} {
		_, err := svc.SignIn(t.Context(), name)
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "name %q: %v", name, err)
	}

	off, _ := newService(t, accounts.Options{})
	_, err = off.SignIn(t.Context(), "ada")
	assert.Equal(t, models.Forbidden, models.ErrorCode(err))
	assert.EqualError(t, err, "guest sign-in is turned off on this server")
}

// TestSignInsPerAddressAreLimited: guest sign-ins are counted per client
// address (per /64 for IPv6); one over the limit is RATE_LIMITED and
// creates no user, and other addresses are not affected.
func TestSignInsPerAddressAreLimited(t *testing.T) {
	now := time.Unix(1000, 0)
	rate := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 2.0 / 60, Burst: 2}, func() time.Time { return now })
	svc, _ := newService(t, accounts.Options{GuestSignIn: true, SignInRate: rate})
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
	svc, tokens := newService(t, accounts.Options{GuestSignIn: true})
	s, err := svc.SignIn(t.Context(), "ada")
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(accounts.DefaultTokenTTL), s.ExpiresAt, 2*time.Second, "the default lifetime")

	p := &models.Principal{User: *s.User, Roles: []models.Role{models.RoleAdmin}}
	me, err := svc.Current(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, s.User, me)
	r, err := svc.Refresh(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, s.User, r.User)
	got, err := tokens.Verify(r.Token)
	require.NoError(t, err)
	assert.Equal(t, []models.Role{models.RoleAdmin}, got.Roles, "the roles are kept")

	gone := &models.Principal{User: models.User{ID: 999, Name: "gone"}}
	for _, err := range []error{second(svc.Current(t.Context(), gone)), second(svc.Refresh(t.Context(), gone))} {
		assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
		assert.EqualError(t, err, "the user of this token no longer exists; sign in again")
	}
}

func second[T any](_ T, err error) error { return err }

func TestSearch(t *testing.T) {
	svc, _ := newService(t, accounts.Options{GuestSignIn: true})
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
