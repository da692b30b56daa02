package app

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
)

// TestLimitRequests: each POST or GET counts against its caller's bucket
// (the user, else the address); one over it gets 429 with Retry-After and
// a GraphQL-shaped RATE_LIMITED error, and never reaches the handler.
// Preflights and WebSocket upgrades are not counted; 0 switches it off.
func TestLimitRequests(t *testing.T) {
	now := time.Unix(1000, 0)
	rate := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 0.5, Burst: 1}, func() time.Time { return now })
	served := 0
	h := limitRequests(rate, slog.New(slog.DiscardHandler), http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	do := func(method, addr string, user int64, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/graphql", nil)
		ctx := request.WithClientAddr(r.Context(), addr)
		if user != 0 {
			ctx = auth.WithPrincipal(ctx, &models.Principal{User: models.User{ID: user}})
		}
		for i := 0; i < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(ctx))
		return w
	}

	assert.Equal(t, http.StatusOK, do(http.MethodPost, "192.0.2.1:1", 0).Code)
	w := do(http.MethodGet, "192.0.2.1:2", 0)
	require.Equal(t, http.StatusTooManyRequests, w.Code, "the address's burst is spent")
	assert.Equal(t, "2", w.Header().Get("Retry-After"), "a token every 2 s")
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var body struct {
		Errors []struct {
			Message    string
			Extensions map[string]string
		}
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	require.Len(t, body.Errors, 1)
	assert.Equal(t, "RATE_LIMITED", body.Errors[0].Extensions["code"])
	assert.Equal(t, "too many operations: at most 0.5 per second, in bursts of 1; retry in 2 s", body.Errors[0].Message)

	assert.Equal(t, http.StatusOK, do(http.MethodPost, "192.0.2.1:1", 7).Code, "a signed-in user is counted as the user")
	assert.Equal(t, http.StatusTooManyRequests, do(http.MethodPost, "192.0.2.9:1", 7).Code, "wherever they come from")
	assert.Equal(t, http.StatusOK, do(http.MethodPost, "192.0.2.2:1", 0).Code, "another address has its own budget")
	assert.Equal(t, http.StatusOK, do(http.MethodOptions, "192.0.2.1:1", 0).Code, "preflights are not counted")
	assert.Equal(t, http.StatusOK, do(http.MethodGet, "192.0.2.1:1", 0, "Upgrade", "websocket").Code, "nor upgrades")
	assert.Equal(t, 5, served, "nothing refused reached the handler")
	assert.EqualValues(t, 2, rate.Refused())

	now = now.Add(2 * time.Second)
	assert.Equal(t, http.StatusOK, do(http.MethodPost, "192.0.2.1:1", 0).Code, "back after Retry-After")

	next := http.NewServeMux()
	assert.Same(t, next, limitRequests(ratelimit.NewKeyed(ratelimit.Limit{}, nil), nil, next), "0 switches it off: the handler itself")
}

// TestCallerKey: the token's user, else the client's address, IPv6 per /64.
func TestCallerKey(t *testing.T) {
	ctx := request.WithClientAddr(t.Context(), "[2001:db8:1:2::5]:443")
	assert.Equal(t, "addr:2001:db8:1:2::/64", callerKey(ctx))
	assert.Equal(t, "user:42", callerKey(auth.WithPrincipal(ctx, &models.Principal{User: models.User{ID: 42}})))
}

// TestUserConns: a signed-in user holds up to the limit at once; one more
// is refused with a TryAgainLater (1013) and counted; a release (once
// only) makes room; anonymous callers and a limit of 0 are not counted.
func TestUserConns(t *testing.T) {
	u := newUserConns(2)
	alice := &models.Principal{User: models.User{ID: 1}}
	r1, err := u.hold(alice)
	require.NoError(t, err)
	_, err = u.hold(alice)
	require.NoError(t, err)
	_, err = u.hold(alice)
	var later *gqlws.TryAgainLater
	require.ErrorAs(t, err, &later)
	assert.Equal(t, "Too many connections for this user (at most 2)", later.Reason)
	assert.EqualValues(t, 1, u.Refused())

	_, err = u.hold(&models.Principal{User: models.User{ID: 2}})
	assert.NoError(t, err, "another user has their own")
	release, err := u.hold(nil)
	assert.NoError(t, err)
	assert.Nil(t, release, "anonymous connections are not counted here")

	r1()
	r1() // a second release gives nothing back
	_, err = u.hold(alice)
	require.NoError(t, err, "a released connection makes room")
	_, err = u.hold(alice)
	assert.Error(t, err, "for one only")

	off := newUserConns(0)
	for range 100 {
		_, err := off.hold(alice)
		require.NoError(t, err)
	}
}
