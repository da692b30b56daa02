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
