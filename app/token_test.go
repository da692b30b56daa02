package app_test

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// tokenCommand runs the token subcommand with args on env and returns what
// it printed to stdout and stderr.
func tokenCommand(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = app.TokenCommand(t.Context(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

var sessionLine = regexp.MustCompile(`^session ([0-9a-f]{32}) of user (\d+) \(([^)]*)\) ends (\S+); end it sooner with: switchboard token revoke --session ([0-9a-f]{32})\n$`)

// TestTokenCommandSessions: the token subcommand prints only the token on
// stdout and, on stderr, the session's id with the command that ends it;
// --user starts another session of an existing user; token revoke ends one
// session, or all of a user's, in the database.
func TestTokenCommandSessions(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir()}
	cfg, err := app.ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	before := time.Now().Truncate(time.Second)

	out, errOut, err := tokenCommand(t, env, "--name", "ops", "--role", "admin", "--ttl", "1h")
	require.NoError(t, err)
	token := strings.TrimSpace(out)
	assert.Equal(t, token+"\n", out, "stdout is the token alone")
	m := sessionLine.FindStringSubmatch(errOut)
	require.NotNil(t, m, "stderr: %q", errOut)
	first, user := m[1], m[2]
	assert.Equal(t, "ops", m[3])
	assert.Equal(t, first, m[5])
	ends, err := time.Parse(time.RFC3339, m[4])
	require.NoError(t, err)
	assert.WithinDuration(t, before.Add(time.Hour), ends, 2*time.Second, "the --ttl")

	db, err := store.Open(t.Context(), cfg.DatabaseURL, store.Options{})
	require.NoError(t, err)
	defer db.Close()
	key, err := db.AuthSecret(t.Context())
	require.NoError(t, err)
	tokens, err := auth.NewTokens(key, nil)
	require.NoError(t, err)
	p, err := tokens.Verify(token)
	require.NoError(t, err)
	assert.Equal(t, first, p.SessionID)
	assert.Equal(t, []models.Role{models.RoleAdmin}, p.Roles)
	assert.Equal(t, ends, p.ExpiresAt)

	out, errOut, err = tokenCommand(t, env, "--user", user, "--ttl", "2h")
	require.NoError(t, err)
	m = sessionLine.FindStringSubmatch(errOut)
	require.NotNil(t, m, "stderr: %q", errOut)
	second := m[1]
	assert.Equal(t, user, m[2], "another session of the same user")
	assert.NotEqual(t, first, second)
	p, err = tokens.Verify(strings.TrimSpace(out))
	require.NoError(t, err)
	assert.Equal(t, "ops", p.User.Name)

	out, _, err = tokenCommand(t, env, "revoke", "--session", first)
	require.NoError(t, err)
	assert.Equal(t, "revoked session "+first+"\n", out)
	out, _, err = tokenCommand(t, env, "revoke", "--session", first)
	require.NoError(t, err)
	assert.Equal(t, "session "+first+" had already been revoked\n", out)
	out, _, err = tokenCommand(t, env, "revoke", "--user", user)
	require.NoError(t, err)
	assert.Contains(t, out, "revoked 2 session(s) of user "+user+": ")
	for _, id := range []string{first, second} {
		s, err := db.Session(context.Background(), id)
		require.NoError(t, err)
		assert.NotNil(t, s.RevokedAt, "session %s", id)
	}

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--name", "x", "--user", "1"}, "give either --name (a new user) or --user (an existing one)"},
		{[]string{"--user", "999"}, "--user: there is no user 999"},
		{[]string{"--name", "x", "--ttl", "10ms"}, "--ttl must be at least 1s"},
		{[]string{"revoke"}, "give either --session ID or --user ID"},
		{[]string{"revoke", "--session", "x'; DROP TABLE sessions"}, "is no session id"},
		{[]string{"revoke", "--session", strings.Repeat("a", 32)}, "there is no session"},
		{[]string{"revoke", "--session", first, "--user", user}, "give either --session ID or --user ID"},
	} {
		_, _, err := tokenCommand(t, env, tc.args...)
		assert.ErrorContains(t, err, tc.err, "%q", tc.args)
	}
}
