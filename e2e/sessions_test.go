package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// Sessions that end: a token never outlives its session, and a session
// ended by signOut or `switchboard token revoke` is refused everywhere
// within seconds.

// refreshed is what refreshSession answers.
type refreshed struct {
	Token     string
	ExpiresAt time.Time
}

// refresh calls refreshSession with token.
func (s *testServer) refresh(tb testing.TB, token string) (refreshed, gqlResponse) {
	tb.Helper()
	r := s.do(tb, token, `mutation { refreshSession { token expiresAt } }`, nil)
	var d struct{ RefreshSession refreshed }
	if len(r.Errors) == 0 {
		require.NoError(tb, json.Unmarshal(r.Data, &d))
	}
	return d.RefreshSession, r
}

// mustRefresh calls refreshSession with token and fails on errors.
func (s *testServer) mustRefresh(tb testing.TB, token string) refreshed {
	tb.Helper()
	got, r := s.refresh(tb, token)
	require.Empty(tb, r.Errors, "refreshSession")
	return got
}

// refused asserts that token is refused over HTTP as a session that ended.
func (s *testServer) refused(tb testing.TB, token string) {
	tb.Helper()
	r := s.do(tb, token, `{ me { id } }`, nil)
	assert.Equal(tb, 401, r.Status)
	require.Len(tb, r.Errors, 1)
	assert.Equal(tb, "UNAUTHENTICATED", r.Errors[0].Code())
	assert.Equal(tb, "session ended: sign in again", r.Errors[0].Message)
}

// TestRefreshKeepsTheSessionsEndAndRoles: a one-hour admin token, refreshed
// again and again, stays a one-hour admin token of the same session; a
// guest's refresh ends at the session's end, not 30 days on.
func TestRefreshKeepsTheSessionsEndAndRoles(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "SESSION_MAX_AGE": "2h"})
	admin := s.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	first := claimsOf(t, admin)
	assert.WithinDuration(t, time.Now().Add(time.Hour), first.Expires(), 5*time.Second)
	token := admin
	for range 3 {
		r := s.mustRefresh(t, token)
		assert.Equal(t, first.Expires(), r.ExpiresAt.UTC(), "the session's end, not 30 days from now")
		c := claimsOf(t, r.Token)
		assert.Equal(t, first.Expires(), c.Expires())
		assert.Equal(t, []string{"admin"}, c.Roles, "the session's roles")
		assert.Equal(t, first.Session, c.Session, "the same session")
		token = r.Token
	}
	s.recordKPI(t, token, map[string]any{"module": "finance", "key": "revenue", "value": 42})

	var guest struct{ SignIn refreshed }
	s.mustDo(t, "", `mutation { signIn(name: "ada") { token expiresAt } }`, nil, &guest)
	assert.WithinDuration(t, time.Now().Add(2*time.Hour), guest.SignIn.ExpiresAt, 5*time.Second, "SESSION_MAX_AGE after sign-in")
	r := s.mustRefresh(t, guest.SignIn.Token)
	assert.Equal(t, guest.SignIn.ExpiresAt, r.ExpiresAt, "near the session's end, a refresh ends with it")
	assert.Empty(t, claimsOf(t, r.Token).Roles)
}

// TestRefreshAfterTheEndIsUnauthenticated: up to its session's end a token
// refreshes into one ending at that end; from the end on, refreshing is
// UNAUTHENTICATED (even within the tokens' leeway of a few seconds), and so
// is every other use of the token.
func TestRefreshAfterTheEndIsUnauthenticated(t *testing.T) {
	s := startServer(t, nil)
	token := s.mintToken(t, "brief", 2*time.Second, models.RolePublisher)
	end := claimsOf(t, token).Expires()
	var refusal gqlResponse
	var refusedAt time.Time
	require.Eventually(t, func() bool {
		got, r := s.refresh(t, token)
		if len(r.Errors) > 0 {
			refusal, refusedAt = r, time.Now()
			return true
		}
		assert.Equal(t, end, got.ExpiresAt.UTC(), "a refresh ends at the session's end")
		return false
	}, 15*time.Second, 50*time.Millisecond)
	require.Len(t, refusal.Errors, 1)
	assert.Equal(t, "UNAUTHENTICATED", refusal.Errors[0].Code())
	assert.False(t, refusedAt.Before(end.Add(-time.Second)), "refused only once the session ended (at %s, the end %s)", refusedAt, end)
	assert.Less(t, refusedAt.Sub(end), 3*time.Second, "refused as soon as the session ended, before the tokens' leeway ran out")
	r := s.do(t, token, `{ me { id } }`, nil)
	assert.Equal(t, 401, r.Status)
}

// sessionSockets are a session's WebSockets, one per protocol, each
// subscribed to the status feed.
type sessionSockets []*wsClient

// openSockets opens, initialises and subscribes one WebSocket per protocol
// with token.
func openSockets(t *testing.T, s *testServer, token string) sessionSockets {
	t.Helper()
	var out sessionSockets
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		c := dialWS(t, s, proto, nil)
		c.init(token)
		c.subscribe("s", `subscription { statusPosted { id } }`, nil)
		out = append(out, c)
	}
	return out
}

// closedForbidden asserts that every socket is closed with 4403 "Session
// ended" within timeout.
func (ss sessionSockets) closedForbidden(t *testing.T, timeout time.Duration) {
	t.Helper()
	for _, c := range ss {
		code, reason := c.closeCode(timeout)
		assert.Equal(t, 4403, code, c.conn.Subprotocol())
		assert.Equal(t, "Session ended", reason, c.conn.Subprotocol())
	}
}

// TestSignOut: signOut ends the caller's session: its tokens (a refreshed
// one too) get 401 over HTTP, its open WebSockets on both protocols are
// closed with 4403 at once, and a new connection_init with it is refused;
// other sessions carry on.
func TestSignOut(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.signIn(t, "alice"), s.signIn(t, "bob")
	refreshedToken := s.mustRefresh(t, alice).Token
	sockets := openSockets(t, s, alice)
	bobs := openSockets(t, s, bob)

	var d struct{ SignOut bool }
	start := time.Now()
	s.mustDo(t, refreshedToken, `mutation { signOut }`, nil, &d)
	assert.True(t, d.SignOut)
	s.refused(t, alice)
	s.refused(t, refreshedToken)
	sockets.closedForbidden(t, 5*time.Second)
	t.Logf("signed out: HTTP refused and both WebSockets closed %s after signOut", time.Since(start).Round(time.Millisecond))

	again := dialWS(t, s, "graphql-transport-ws", nil)
	again.send("connection_init", "", map[string]any{"authorization": "Bearer " + alice})
	code, _ := again.closeCode(5 * time.Second)
	assert.Equal(t, 4403, code, "a new connection with the ended session")
	_, r := s.refresh(t, alice)
	assert.Equal(t, 401, r.Status)

	s.mustDo(t, bob, `{ me { name } }`, nil, nil)
	posted := s.post(t, bob, "still here")
	for _, c := range bobs {
		assert.Equal(t, posted.ID, c.nextStatus("s", 5*time.Second).ID, "bob's sockets stay open")
	}
}

// sessionLine is the token subcommand's stderr line naming the session.
var sessionLine = regexp.MustCompile(`^session ([0-9a-f]{32}) of user (\d+) `)

// TestTokenRevoke: `token revoke --session` ends one session; `token
// revoke --user` ends every session of the user, each refused over HTTP
// and closed over WebSocket.
func TestTokenRevoke(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false"})
	mint := func(args ...string) (token, session, user string) {
		out, errOut := s.tokenCommand(t, args...)
		m := sessionLine.FindStringSubmatch(errOut)
		require.NotNil(t, m, "stderr: %q", errOut)
		return strings.TrimSpace(out), m[1], m[2]
	}
	first, firstSession, user := mint("--name", "ops", "--role", "admin", "--ttl", "1h")
	second, _, sameUser := mint("--user", user, "--role", "publisher", "--ttl", "1h")
	require.Equal(t, user, sameUser)
	third, thirdSession, _ := mint("--user", user, "--ttl", "1h")
	other, _, _ := mint("--name", "other", "--ttl", "1h")
	for _, token := range []string{first, second, third, other} {
		s.mustDo(t, token, `{ me { id } }`, nil, nil)
	}
	thirdSockets := openSockets(t, s, third)

	out, _ := s.tokenCommand(t, "revoke", "--session", thirdSession)
	assert.Equal(t, "revoked session "+thirdSession+"\n", out)
	thirdSockets.closedForbidden(t, 5*time.Second)
	s.refused(t, third)
	s.mustDo(t, first, `{ me { id } }`, nil, nil)

	sockets := append(openSockets(t, s, first), openSockets(t, s, second)...)
	out, _ = s.tokenCommand(t, "revoke", "--user", user)
	assert.Contains(t, out, "revoked 3 session(s) of user "+user+": ")
	assert.Contains(t, out, firstSession)
	sockets.closedForbidden(t, 5*time.Second)
	s.refused(t, first)
	s.refused(t, second)
	s.mustDo(t, other, `{ me { id } }`, nil, nil)
}

// TestRevocationOnEveryReplica: a session signed out through one replica
// is refused by another, over HTTP and WebSocket, within seconds: at once
// through Redis, and within the database recheck (2 s) when Redis is down
// or absent.
func TestRevocationOnEveryReplica(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T) (a, b *testServer)
	}{
		{"through Redis", func(t *testing.T) (a, b *testServer) {
			_, replicas := startReplicas(t, 2, redistest.URL(t))
			return replicas[0], replicas[1]
		}},
		{"Redis stopped", func(t *testing.T) (a, b *testServer) {
			redis := redistest.Start(t)
			_, replicas := startReplicas(t, 2, redis.URL())
			redis.Stop()
			return replicas[0], replicas[1]
		}},
		{"no Redis", func(t *testing.T) (a, b *testServer) {
			env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "DEMO_FEED": "false"}
			return startServer(t, env), startServer(t, env)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.start(t)
			alice := a.signIn(t, "alice")
			b.mustDo(t, alice, `{ me { id } }`, nil, nil) // B has seen the session standing
			sockets := openSockets(t, b, alice)
			start := time.Now()
			a.mustDo(t, alice, `mutation { signOut }`, nil, nil)
			sockets.closedForbidden(t, 10*time.Second)
			took := time.Since(start)
			b.refused(t, alice)
			t.Logf("%s: the other replica closed the session's WebSockets %s after signOut", tc.name, took.Round(time.Millisecond))
			assert.Less(t, took, 5*time.Second, "within seconds")
		})
	}
}

// TestProductionNeedsAuthSecret: ENV=production without AUTH_SECRET does
// not start, and says how to make one.
func TestProductionNeedsAuthSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTH_SECRET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "SWITCHBOARD_TEST_SERVE=1", "ENV=production", "ADDR=127.0.0.1:0", "DATA_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the server refused to start: %s", out)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, string(out), "ENV=production needs AUTH_SECRET")
	assert.Contains(t, string(out), "openssl rand -base64 48")
	assert.NotContains(t, string(out), "listening")
}
