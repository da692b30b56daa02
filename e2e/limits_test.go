package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rate limits: over a limit a client gets RATE_LIMITED (or 429 for a
// connection), nothing is stored, the connection stays, and nobody else is
// affected.

func TestSubscriptionsPerConnectionAreLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_SUBSCRIPTIONS": "3"})
	c := s.chatWS(t, "")
	const sub = `subscription { statusPosted { id } }`
	for i := range 3 {
		c.subscribe(strconv.Itoa(i), sub, nil)
	}
	c.subscribe("4", sub, nil)
	e := c.operationError("4")
	assert.Equal(t, "RATE_LIMITED", e.Code())
	assert.Contains(t, e.Message, "at most 3")

	// The connection is fine, and a finished operation frees its place.
	c.send("complete", "0", nil)
	require.Eventually(t, func() bool {
		c.subscribe("5", sub, nil)
		st := s.post(t, s.signIn(t, "poster"), "hello")
		for {
			m := c.read(5 * time.Second)
			if m.Type == "error" && m.ID == "5" {
				return false // not freed yet: try again
			}
			if m.Type == "next" && m.ID == "5" {
				var p struct{ Data struct{ StatusPosted event } }
				require.NoError(t, json.Unmarshal(m.Payload, &p))
				return p.Data.StatusPosted.ID == st.ID
			}
		}
	}, 5*time.Second, 50*time.Millisecond)
}

func TestOperationsPerSecondAreLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_OPERATIONS": "1"}) // bursts of 2
	c := s.chatWS(t, "")
	for i := range 5 {
		c.subscribe(strconv.Itoa(i), `{ statuses(first: 1) { edges { cursor } } }`, nil)
	}
	limited, answered := 0, 0
	for answered+limited < 5 {
		m := c.read(5 * time.Second)
		switch m.Type {
		case "error":
			var errs []gqlError
			require.NoError(t, json.Unmarshal(m.Payload, &errs))
			assert.Equal(t, "RATE_LIMITED", errs[0].Code())
			limited++
		case "next":
			answered++
		}
	}
	assert.Equal(t, 2, answered, "the burst passes")
	assert.Equal(t, 3, limited, "the rest is refused at once, not queued")
}

func TestMessagesAndTypingPerUserAreLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_MESSAGES": "1", "LIMIT_TYPING": "1"}) // bursts of 2
	general := s.generalRoom(t)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	post := func(u chatUser, text string) string {
		r := s.do(t, u.token, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`, map[string]any{"r": general.ID, "t": text})
		if len(r.Errors) > 0 {
			return r.Errors[0].Code()
		}
		return "ok"
	}
	assert.Equal(t, []string{"ok", "ok", "RATE_LIMITED"}, []string{post(alice, "1"), post(alice, "2"), post(alice, "3")})
	assert.Equal(t, "ok", post(bob, "bob's"), "another user is not affected")
	var d struct {
		Messages struct{ Edges []struct{ Node event } }
	}
	s.mustDo(t, "", `query($r: ID!) { messages(roomId: $r) { edges { node { id text } } } }`, map[string]any{"r": general.ID}, &d)
	var texts []string
	for _, e := range d.Messages.Edges {
		texts = append(texts, e.Node.Text)
	}
	assert.Equal(t, []string{"1", "2", "bob's"}, texts, "the refused message was not stored")

	typing := func(on bool) string {
		r := s.do(t, alice.token, `mutation($r: ID!, $on: Boolean!) { setTyping(roomId: $r, typing: $on) }`, map[string]any{"r": general.ID, "on": on})
		if len(r.Errors) > 0 {
			return r.Errors[0].Code()
		}
		return "ok"
	}
	assert.Equal(t, []string{"ok", "ok", "RATE_LIMITED", "ok"}, []string{typing(true), typing(true), typing(true), typing(false)},
		"stopping is never limited")
}

// TestStatusesPerUserAreLimited: postStatus over HTTP and over WebSocket
// draws from one bucket per user; a refused status is not stored, and
// another user is not affected.
func TestStatusesPerUserAreLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "1"}) // bursts of 2
	const mutation = `mutation($t: String!) { postStatus(text: $t) { id } }`
	overHTTP := func(token, text string) string {
		r := s.do(t, token, mutation, map[string]any{"t": text})
		if len(r.Errors) > 0 {
			return r.Errors[0].Code()
		}
		return "ok"
	}
	carol := s.signIn(t, "carol")
	ws := s.chatWS(t, carol)
	overWS := func(text string) string {
		ws.subscribe(text, mutation, map[string]any{"t": text})
		m := ws.read(5 * time.Second)
		require.Equal(t, text, m.ID)
		require.Equal(t, "next", m.Type, "%s", m.Payload)
		require.Equal(t, "complete", ws.read(5*time.Second).Type)
		var p struct{ Errors []gqlError }
		require.NoError(t, json.Unmarshal(m.Payload, &p))
		if len(p.Errors) > 0 {
			return p.Errors[0].Code()
		}
		return "ok"
	}

	alice := s.signIn(t, "alice")
	assert.Equal(t, []string{"ok", "ok", "RATE_LIMITED"},
		[]string{overHTTP(alice, "alice 1"), overHTTP(alice, "alice 2"), overHTTP(alice, "alice 3")}, "over HTTP")
	assert.Equal(t, []string{"ok", "ok", "RATE_LIMITED"},
		[]string{overWS("carol 1"), overWS("carol 2"), overWS("carol 3")}, "over WebSocket")
	assert.Equal(t, "RATE_LIMITED", overHTTP(carol, "carol 4"), "one bucket per user, whatever the transport")
	assert.Equal(t, "ok", overHTTP(s.signIn(t, "bob"), "bob's"), "another user is not affected")

	assert.Equal(t, []string{"bob's", "carol 2", "carol 1", "alice 2", "alice 1"}, s.statusTexts(t), "the refused statuses were not stored")
}

func TestConnectionsPerAddressAreLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_CONNS_PER_ADDR": "2", "TRUSTED_PROXIES": "127.0.0.1"})
	dial := func(forwardedFor string) (*websocket.Conn, int) {
		h := http.Header{}
		if forwardedFor != "" {
			h.Set("X-Forwarded-For", forwardedFor)
		}
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
		c, resp, err := d.Dial(s.WS(), h)
		if err != nil {
			require.NotNil(t, resp, "%v", err)
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, http.StatusSwitchingProtocols
	}
	first, code := dial("198.51.100.1")
	require.Equal(t, http.StatusSwitchingProtocols, code)
	_, code = dial("198.51.100.1")
	require.Equal(t, http.StatusSwitchingProtocols, code)
	_, code = dial("198.51.100.1")
	assert.Equal(t, http.StatusTooManyRequests, code, "a third connection from one client is refused")
	_, code = dial("198.51.100.2")
	assert.Equal(t, http.StatusSwitchingProtocols, code, "another client behind the same proxy is not")
	for _, from := range []string{"2001:db8::1", "2001:db8::2"} {
		_, code = dial(from)
		require.Equal(t, http.StatusSwitchingProtocols, code)
	}
	_, code = dial("2001:db8::ffff:3")
	assert.Equal(t, http.StatusTooManyRequests, code, "an IPv6 client is counted by its /64")
	_, code = dial("2001:db8:0:1::1")
	assert.Equal(t, http.StatusSwitchingProtocols, code, "the next /64 is another client")

	require.NoError(t, first.Close())
	require.Eventually(t, func() bool {
		c, code := dial("198.51.100.1")
		if c != nil {
			_ = c.Close()
		}
		return code == http.StatusSwitchingProtocols
	}, 5*time.Second, 50*time.Millisecond, "a closed connection frees its place")
}

// TestSizeLimitsAreConfigurable: the WebSocket message and HTTP body limits
// follow their settings; over them, the WebSocket closes with 1009 and the
// request gets 413, and the oversized input is not echoed back.
func TestSizeLimitsAreConfigurable(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_WS_MESSAGE": "2048", "LIMIT_HTTP_BODY": "4096"})
	big := strings.Repeat("x", 3000)
	c := s.chatWS(t, "")
	c.send("subscribe", "1", map[string]any{"query": "{ me { id } }", "variables": map[string]any{"pad": big}})
	code, reason := c.closeCode(5 * time.Second)
	assert.Equal(t, websocket.CloseMessageTooBig, code)
	assert.NotContains(t, reason, "xxx")

	r := s.do(t, "", `{ me { id } }`, map[string]any{"pad": big}) // under 4096: fine
	assert.Empty(t, r.Errors)
	body, _ := json.Marshal(map[string]any{"query": "{ me { id } }", "variables": map[string]any{"pad": strings.Repeat(big, 2)}})
	resp, err := http.Post(s.URL+"/graphql", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	echoed, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.NotContains(t, string(echoed), "xxx", "the body is not echoed back")
}
