package request_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/request"
)

// TestResolveClient: X-Forwarded-For names the client only behind a trusted
// proxy, and only as far as the chain of trusted proxies goes.
func TestResolveClient(t *testing.T) {
	trusted, err := request.ParseTrustedProxies("10.0.0.0/8, 127.0.0.1, ::1")
	require.NoError(t, err)
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy header", "203.0.113.7:5000", nil, "203.0.113.7:5000"},
		{"untrusted peer cannot spoof", "203.0.113.7:5000", []string{"1.2.3.4"}, "203.0.113.7:5000"},
		{"trusted proxy names the client", "127.0.0.1:4000", []string{"198.51.100.9"}, "198.51.100.9:0"},
		{"right-most untrusted hop wins", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.9, 10.9.9.9"}, "198.51.100.9:0"},
		{"several header lines", "127.0.0.1:4000", []string{"6.6.6.6", "198.51.100.9"}, "198.51.100.9:0"},
		{"only proxies: the first one", "127.0.0.1:4000", []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5:0"},
		{"malformed hop stops the walk", "127.0.0.1:4000", []string{"198.51.100.9, garbage"}, "127.0.0.1:4000"},
		{"IPv6 peer", "[::1]:4000", []string{"2001:db8::1"}, "[2001:db8::1]:0"},
		{"trusted proxy without header", "127.0.0.1:4000", nil, "127.0.0.1:4000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got string
			h := request.ResolveClient(trusted, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			assert.Equal(t, c.want, got)
		})
	}
	_, err = request.ParseTrustedProxies("10.0.0.0/8, nonsense")
	assert.Error(t, err)
}

// TestAssignID: a sane X-Request-ID is kept and echoed, anything else is
// replaced by a fresh id; either way the handler sees it in its context,
// with the client's address.
func TestAssignID(t *testing.T) {
	for _, tc := range []struct {
		name, sent string
		keep       bool
	}{
		{"none", "", false},
		{"sane", "req-42.abc", true},
		{"too long", strings.Repeat("x", 65), false},
		{"control character", "a\x01b", false},
		{"space", "a b", false},
		{"non-ASCII", "r\u00e9q", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id, addr string
			h := request.AssignID(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				id, addr = request.ID(r.Context()), request.ClientAddr(r.Context())
			}))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = "192.0.2.1:1234"
			if tc.sent != "" {
				r.Header.Set("X-Request-ID", tc.sent)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			assert.Equal(t, id, w.Header().Get("X-Request-ID"), "the id is echoed")
			assert.Equal(t, "192.0.2.1:1234", addr)
			if tc.keep {
				assert.Equal(t, tc.sent, id)
			} else {
				assert.Regexp(t, "^[0-9a-f]{16}$", id)
			}
		})
	}
}

// TestLogHandler: a line logged with a request's context carries its id,
// unless it names one itself; a line without one is unchanged.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(request.LogHandler(slog.NewJSONHandler(&buf, nil))).With("part", "test")
	ctx := request.WithID(context.Background(), "r1")
	log.InfoContext(ctx, "one")
	log.InfoContext(ctx, "two", "request_id", "own")
	log.Info("three")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], `"request_id":"r1"`)
	assert.Contains(t, lines[0], `"part":"test"`, "WithAttrs keeps the handler")
	assert.Contains(t, lines[1], `"request_id":"own"`)
	assert.NotContains(t, lines[1], `"r1"`)
	assert.NotContains(t, lines[2], "request_id")
}
