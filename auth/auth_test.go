package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
)

var key = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTokens(t *testing.T) (*auth.Tokens, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	tok, err := auth.NewTokens(key, c.now)
	require.NoError(t, err)
	return tok, c
}

func TestShortKeyRefused(t *testing.T) {
	_, err := auth.NewTokens([]byte("short"), nil)
	assert.ErrorContains(t, err, "at least 32")
}

// sid is a session id for the tests.
const sid = "0123456789abcdef0123456789abcdef"

func TestIssueVerifyRoundTrip(t *testing.T) {
	tok, c := newTokens(t)
	s, exp, err := tok.Issue(&models.User{ID: 7, Name: "Ada"}, []models.Role{models.RoleAdmin}, sid, c.t.Add(time.Hour+900*time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, c.t.Add(time.Hour), exp, "to the second, never later than asked")
	p, err := tok.Verify(s)
	require.NoError(t, err)
	assert.Equal(t, int64(7), p.User.ID)
	assert.Equal(t, "Ada", p.User.Name)
	assert.True(t, p.Has(models.RoleAdmin))
	assert.False(t, p.Has(models.RolePublisher))
	assert.Equal(t, exp, p.ExpiresAt)
	assert.Equal(t, sid, p.SessionID)

	_, _, err = tok.Issue(&models.User{ID: 7, Name: "Ada"}, nil, sid, c.t.Add(999*time.Millisecond))
	assert.ErrorContains(t, err, "is not after", "an expiry less than a second away")
	_, _, err = tok.Issue(&models.User{ID: 7, Name: "Ada"}, nil, "", c.t.Add(time.Hour))
	assert.ErrorContains(t, err, "no session")
}

// A token verified before is remembered, but not past its expiry, and each
// caller gets a principal of its own.
func TestVerifiedTokenStillExpires(t *testing.T) {
	tok, c := newTokens(t)
	s, exp, err := tok.Issue(&models.User{ID: 7, Name: "Ada"}, nil, sid, c.t.Add(time.Hour))
	require.NoError(t, err)
	first, err := tok.Verify(s)
	require.NoError(t, err)
	first.User.Name = "changed by a caller"
	c.t = exp.Add(4 * time.Second) // within the leeway
	again, err := tok.Verify(s)
	require.NoError(t, err)
	assert.Equal(t, "Ada", again.User.Name, "a caller's change reached another caller")
	c.t = exp.Add(5 * time.Second)
	_, err = tok.Verify(s)
	require.Error(t, err, "a remembered token outlived its expiry")
	var e *models.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "token expired", e.Message)
}

// sign makes a token with arbitrary claims and method.
func sign(t *testing.T, method jwt.SigningMethod, k any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(k)
	require.NoError(t, err)
	return s
}

func TestVerifyRefuses(t *testing.T) {
	tok, c := newTokens(t)
	good, _, err := tok.Issue(&models.User{ID: 1, Name: "x"}, nil, sid, c.t.Add(time.Hour))
	require.NoError(t, err)
	now := c.t.Unix()
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": auth.Issuer, "sub": "1", "iat": now, "exp": now + 3600, "name": "x", "sid": sid}
	}
	parts := strings.Split(good, ".")
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))

	cases := []struct {
		name, token, reason string
		advance             time.Duration
	}{
		{name: "garbage", token: "not.a.token", reason: "invalid token"},
		{name: "forged signature", token: parts[0] + "." + parts[1] + ".AAAA", reason: "invalid token"},
		{name: "other key", token: sign(t, jwt.SigningMethodHS256, []byte("another-key-another-key-another!!"), valid()), reason: "invalid token"},
		{name: "alg none", token: noneHeader + "." + parts[1] + ".", reason: "invalid token"},
		{name: "HS512", token: sign(t, jwt.SigningMethodHS512, key, valid()), reason: "invalid token"},
		{name: "wrong issuer", token: sign(t, jwt.SigningMethodHS256, key, func() jwt.MapClaims { c := valid(); c["iss"] = "evil"; return c }()), reason: "invalid token"},
		{name: "no expiry", token: sign(t, jwt.SigningMethodHS256, key, func() jwt.MapClaims { c := valid(); delete(c, "exp"); return c }()), reason: "invalid token"},
		{name: "bad subject", token: sign(t, jwt.SigningMethodHS256, key, func() jwt.MapClaims { c := valid(); c["sub"] = "abc"; return c }()), reason: "invalid token"},
		{name: "expired", token: good, advance: 2 * time.Hour, reason: "token expired"},
		{name: "no session", token: sign(t, jwt.SigningMethodHS256, key, func() jwt.MapClaims { c := valid(); delete(c, "sid"); return c }()), reason: "token without a session: sign in again"},
		{name: "bad session", token: sign(t, jwt.SigningMethodHS256, key, func() jwt.MapClaims { c := valid(); c["sid"] = "' OR 1=1"; return c }()), reason: "token without a session: sign in again"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := c.t
			c.t = c.t.Add(tc.advance)
			defer func() { c.t = saved }()
			_, err := tok.Verify(tc.token)
			require.Error(t, err)
			assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
			var e *models.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.reason, e.Message, "the client-facing reason is short and generic")
		})
	}
}

func TestFromHeader(t *testing.T) {
	cases := []struct {
		in, token      string
		present, isErr bool
	}{
		{in: "", present: false},
		{in: "Bearer abc", token: "abc", present: true},
		{in: "bearer  abc ", token: "abc", present: true},
		{in: "Basic abc", present: true, isErr: true},
		{in: "Bearer", present: true, isErr: true},
		{in: "Bearer   ", present: true, isErr: true},
	}
	for _, tc := range cases {
		token, present, err := auth.FromHeader(tc.in)
		assert.Equal(t, tc.present, present, "%q", tc.in)
		assert.Equal(t, tc.isErr, err != nil, "%q", tc.in)
		assert.Equal(t, tc.token, token, "%q", tc.in)
	}
}

// sessions is an auth.Sessions whose sessions stand unless listed in
// ended or down.
type sessions struct{ ended, down map[string]bool }

func (s sessions) Check(_ context.Context, id string, _ int64) error {
	switch {
	case s.ended[id]:
		return models.Errorf(models.Unauthenticated, "session ended: sign in again")
	case s.down[id]:
		return models.E("check session", models.Unavailable, errors.New("dial tcp: refused"), "the database is unavailable, try again later")
	}
	return nil
}

// issue issues a token of session id for user, valid for an hour.
func issue(t *testing.T, tok *auth.Tokens, c *clock, user *models.User, id string) string {
	t.Helper()
	s, _, err := tok.Issue(user, nil, id, c.t.Add(time.Hour))
	require.NoError(t, err)
	return s
}

func TestMiddleware(t *testing.T) {
	tok, c := newTokens(t)
	ended, down := strings.Repeat("e", 32), strings.Repeat("d", 32)
	tok = tok.WithSessions(sessions{ended: map[string]bool{ended: true}, down: map[string]bool{down: true}})
	good := issue(t, tok, c, &models.User{ID: 3, Name: "Mo"}, sid)
	var seen *models.Principal
	h := tok.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.PrincipalFrom(r.Context())
		w.WriteHeader(http.StatusTeapot)
	}))
	serve := func(header string) *httptest.ResponseRecorder {
		seen = nil
		r := httptest.NewRequest(http.MethodPost, "/graphql?token="+good, nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	w := serve("")
	assert.Equal(t, http.StatusTeapot, w.Code)
	assert.Nil(t, seen, "a token in the URL is never read")

	w = serve("Bearer " + good)
	assert.Equal(t, http.StatusTeapot, w.Code)
	require.NotNil(t, seen)
	assert.Equal(t, int64(3), seen.User.ID)

	w = serve("Bearer nope")
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.JSONEq(t, `{"errors":[{"message":"invalid token","extensions":{"code":"UNAUTHENTICATED"}}]}`, w.Body.String())

	w = serve("Bearer " + issue(t, tok, c, &models.User{ID: 3, Name: "Mo"}, ended))
	assert.Equal(t, http.StatusUnauthorized, w.Code, "a token whose session ended")
	assert.Nil(t, seen)
	assert.JSONEq(t, `{"errors":[{"message":"session ended: sign in again","extensions":{"code":"UNAUTHENTICATED"}}]}`, w.Body.String())

	w = serve("Bearer " + issue(t, tok, c, &models.User{ID: 3, Name: "Mo"}, down))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "a session that cannot be checked")
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.JSONEq(t, `{"errors":[{"message":"the database is unavailable, try again later","extensions":{"code":"UNAVAILABLE"}}]}`, w.Body.String(),
		"the cause stays in the server")

	// Only a WebSocket upgrade passes unchecked (its token comes in
	// connection_init); any other Upgrade header is an ordinary request.
	for upgrade, want := range map[string]int{"websocket": http.StatusTeapot, "WebSocket": http.StatusTeapot, "h2c": http.StatusUnauthorized, "foo": http.StatusUnauthorized} {
		r := httptest.NewRequest(http.MethodGet, "/graphql", nil)
		r.Header.Set("Upgrade", upgrade)
		r.Header.Set("Authorization", "Bearer nope")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, want, w.Code, "Upgrade: %s", upgrade)
	}
}

func TestConnectionInit(t *testing.T) {
	tok, c := newTokens(t)
	ended := strings.Repeat("e", 32)
	tok = tok.WithSessions(sessions{ended: map[string]bool{ended: true}})
	good := issue(t, tok, c, &models.User{ID: 9, Name: "Ivy"}, sid)

	ctx, p, err := tok.ConnectionInit(context.Background(), map[string]any{})
	require.NoError(t, err)
	assert.Nil(t, p)
	_, ok := auth.PrincipalFrom(ctx)
	assert.False(t, ok, "no token: anonymous")

	for _, key := range []string{"authorization", "Authorization"} {
		ctx, p, err = tok.ConnectionInit(context.Background(), map[string]any{key: "Bearer " + good})
		require.NoError(t, err)
		require.NotNil(t, p)
		assert.Equal(t, "Ivy", p.User.Name)
		fromCtx, ok := auth.PrincipalFrom(ctx)
		require.True(t, ok)
		assert.Equal(t, p, fromCtx)
	}

	_, _, err = tok.ConnectionInit(context.Background(), map[string]any{"authorization": "Bearer bad"})
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
	assert.EqualError(t, err, "invalid token")

	_, p, err = tok.ConnectionInit(context.Background(), map[string]any{"authorization": "Bearer " + issue(t, tok, c, &models.User{ID: 9, Name: "Ivy"}, ended)})
	assert.Nil(t, p)
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
	assert.EqualError(t, err, "session ended: sign in again")

	_, err = auth.Require(context.Background())
	assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
}
