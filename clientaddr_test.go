package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientAddr: X-Forwarded-For names the client only behind a trusted
// proxy, and only as far as the chain of trusted proxies goes.
func TestClientAddr(t *testing.T) {
	trusted, err := parseTrustedProxies("10.0.0.0/8, 127.0.0.1, ::1")
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
			h := withClientAddr(trusted, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			assert.Equal(t, c.want, got)
		})
	}
	_, err = parseTrustedProxies("10.0.0.0/8, nonsense")
	assert.Error(t, err)
}
