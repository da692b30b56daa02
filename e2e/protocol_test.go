package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The graphql-transport-ws protocol exactly as its specification says
// (docs/protocol.md), one case per rule, with a raw WebSocket client.

func TestTransportWSCloseCodes(t *testing.T) {
	s := startServer(t, nil)
	token := s.signIn(t, "Pat")
	subscribeMsg := func(id string) map[string]any {
		m := map[string]any{"type": "subscribe", "payload": map[string]any{"query": `subscription { statusPosted { id } }`}}
		if id != "" {
			m["id"] = id
		}
		return m
	}
	cases := []struct {
		name   string
		init   bool // send connection_init first and wait for the ack
		send   []any
		code   int
		reason string
	}{
		{name: "invalid JSON", send: []any{"{not json"}, code: 4400},
		{name: "binary frame", send: []any{[]byte(`{"type":"ping"}`)}, code: 4400},
		{name: "unknown type", init: true, send: []any{map[string]any{"type": "hello"}}, code: 4400},
		{name: "no type", init: true, send: []any{map[string]any{"id": "1"}}, code: 4400},
		{name: "server message from client", init: true, send: []any{map[string]any{"type": "next", "id": "1", "payload": map[string]any{}}}, code: 4400},
		{name: "subscribe without id", init: true, send: []any{subscribeMsg("")}, code: 4400},
		{name: "subscribe with empty id", init: true, send: []any{map[string]any{"type": "subscribe", "id": "", "payload": map[string]any{"query": "{ me { id } }"}}}, code: 4400},
		{name: "subscribe without query", init: true, send: []any{map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{}}}, code: 4400},
		{name: "complete without id", init: true, send: []any{map[string]any{"type": "complete"}}, code: 4400},
		{name: "init payload not an object", send: []any{map[string]any{"type": "connection_init", "payload": "token"}}, code: 4400},
		{name: "subscribe before ack", send: []any{subscribeMsg("1")}, code: 4401, reason: "Unauthorized"},
		{name: "bad token", send: []any{map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer nope"}}}, code: 4403, reason: "Forbidden"},
		{name: "duplicate id", init: true, send: []any{subscribeMsg("dup"), subscribeMsg("dup")}, code: 4409, reason: "Subscriber for dup already exists"},
		{name: "long duplicate id, shortened to fit a close frame", init: true, send: []any{subscribeMsg(strings.Repeat("d", 128)), subscribeMsg(strings.Repeat("d", 128))},
			code: 4409, reason: "Subscriber for " + strings.Repeat("d", 90) + "… already exists"},
		{name: "id over 128 bytes", init: true, send: []any{subscribeMsg(strings.Repeat("i", 129))}, code: 4400},
		{name: "text that is not UTF-8", send: []any{"{\"type\":\"ping\",\"payload\":{\"x\":\"\xff\"}}"}, code: 1007, reason: "Invalid UTF-8"},
		{name: "ping payload not an object", send: []any{map[string]any{"type": "ping", "payload": "hello"}}, code: 4400},
		{name: "second init", init: true, send: []any{map[string]any{"type": "connection_init"}}, code: 4429, reason: "Too many initialisation requests"},
		{name: "message too big", init: true, send: []any{`{"type":"ping","payload":"` + strings.Repeat("x", 70<<10) + `"}`}, code: websocket.CloseMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, s, "graphql-transport-ws", nil)
			if tc.init {
				c.init(token)
			}
			for _, m := range tc.send {
				var err error
				switch m := m.(type) {
				case string:
					err = c.conn.WriteMessage(websocket.TextMessage, []byte(m))
				case []byte:
					err = c.conn.WriteMessage(websocket.BinaryMessage, m)
				default:
					err = c.conn.WriteJSON(m)
				}
				require.NoError(t, err)
			}
			code, reason := c.closeCode(5 * time.Second)
			assert.Equal(t, tc.code, code, "reason %q", reason)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, reason)
			}
		})
	}
}

func TestTransportWSInitTimeout(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-transport-ws", nil)
	start := time.Now()
	code, reason := c.closeCode(10 * time.Second)
	assert.Equal(t, 4408, code)
	assert.Equal(t, "Connection initialisation timeout", reason)
	assert.InDelta(t, 3.0, time.Since(start).Seconds(), 1.5, "the reference server's 3 s")
}

func TestTransportWSPingPong(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-transport-ws", nil)
	// A ping is answered even before connection_init, with its payload.
	c.send("ping", "", map[string]any{"at": 1})
	m := c.rawRead(5 * time.Second)
	assert.Equal(t, "pong", m.Type)
	assert.JSONEq(t, `{"at":1}`, string(m.Payload))
	c.send("ping", "", nil)
	m = c.rawRead(5 * time.Second)
	assert.Equal(t, "pong", m.Type)
	assert.Empty(t, m.Payload)
	// An unsolicited pong is fine.
	c.send("pong", "", nil)
	c.init("")
}

func TestTransportWSOperations(t *testing.T) {
	s := startServer(t, nil)
	token := s.signIn(t, "Ops")
	c := dialWS(t, s, "graphql-transport-ws", nil)
	c.init(token)

	t.Run("error ends the operation, nothing follows", func(t *testing.T) {
		c.send("subscribe", "bad", map[string]any{"query": `subscription { nope }`})
		m := c.read(5 * time.Second)
		assert.Equal(t, "error", m.Type)
		assert.Equal(t, "bad", m.ID)
		assert.Contains(t, string(m.Payload), "GRAPHQL_VALIDATION_FAILED")
		// The next message is the answer to the next operation, not a complete for "bad".
		c.send("subscribe", "q", map[string]any{"query": `{ me { name } }`})
		m = c.read(5 * time.Second)
		assert.Equal(t, "next", m.Type)
		assert.Equal(t, "q", m.ID)
		assert.JSONEq(t, `{"data":{"me":{"name":"Ops"}}}`, string(m.Payload))
		m = c.read(5 * time.Second)
		assert.Equal(t, "complete", m.Type, "a query completes after its result")
		assert.Equal(t, "q", m.ID)
	})

	t.Run("ids are reusable once complete", func(t *testing.T) {
		for range 2 {
			c.send("subscribe", "again", map[string]any{"query": `{ me { name } }`})
			assert.Equal(t, "next", c.read(5*time.Second).Type)
			assert.Equal(t, "complete", c.read(5*time.Second).Type)
		}
	})

	t.Run("mutation over the socket", func(t *testing.T) {
		c.send("subscribe", "m", map[string]any{"query": `mutation { postStatus(text: "via ws") { text } }`})
		m := c.read(5 * time.Second)
		assert.JSONEq(t, `{"data":{"postStatus":{"text":"via ws"}}}`, string(m.Payload))
		assert.Equal(t, "complete", c.read(5*time.Second).Type)
	})

	t.Run("concurrent subscriptions keep their ids", func(t *testing.T) {
		c.send("subscribe", "a", map[string]any{"query": `subscription { statusPosted(after: "0") { text } }`})
		c.send("subscribe", "b", map[string]any{"query": `subscription { statusPosted(after: "0") { id } }`})
		seen := map[string]int{}
		for seen["a"] < 1 || seen["b"] < 1 {
			m := c.read(5 * time.Second)
			require.Equal(t, "next", m.Type)
			seen[m.ID]++
			if m.ID == "a" {
				assert.Contains(t, string(m.Payload), `"text"`)
			} else {
				assert.Contains(t, string(m.Payload), `"id"`)
			}
		}
		// Completing one leaves the other running.
		c.send("complete", "a", nil)
		c.send("subscribe", "sync", map[string]any{"query": `{ me { id } }`})
		for m := c.read(5 * time.Second); m.ID != "sync"; m = c.read(5 * time.Second) {
		}
		c.read(5 * time.Second) // complete of sync
		s.post(t, token, "after complete of a")
		m := c.read(5 * time.Second)
		assert.Equal(t, "b", m.ID)
	})
}

func TestSubprotocolNegotiation(t *testing.T) {
	s := startServer(t, nil)
	cases := []struct {
		offered []string
		want    string
		code    int // close code right after the handshake, 0 for none
	}{
		{offered: []string{"graphql-transport-ws"}, want: "graphql-transport-ws"},
		{offered: []string{"graphql-ws"}, want: "graphql-ws"},
		{offered: []string{"graphql-ws", "graphql-transport-ws"}, want: "graphql-transport-ws"},
		{offered: nil, want: ""}, // legacy, as old Apollo clients expect
		{offered: []string{"mqtt", "wamp"}, code: 4406},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.offered, ",")+"→"+tc.want, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: tc.offered, HandshakeTimeout: 5 * time.Second}
			conn, resp, err := d.Dial(s.WS(), nil)
			require.NoError(t, err)
			resp.Body.Close()
			c := &wsClient{tb: t, conn: conn}
			t.Cleanup(func() { conn.Close() })
			assert.Equal(t, tc.want, conn.Subprotocol())
			if tc.code != 0 {
				code, reason := c.closeCode(5 * time.Second)
				assert.Equal(t, tc.code, code)
				assert.Equal(t, "Subprotocol not acceptable", reason)
				return
			}
			c.init("")
		})
	}
}

func TestLegacyProtocol(t *testing.T) {
	s := startServer(t, nil)
	token := s.signIn(t, "Leg")

	t.Run("ack then ka", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.send("connection_init", "", map[string]any{"authorization": "Bearer " + token})
		assert.Equal(t, "connection_ack", c.rawRead(5*time.Second).Type)
		assert.Equal(t, "ka", c.rawRead(5*time.Second).Type)
	})
	t.Run("start before init is an error", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.send("start", "1", map[string]any{"query": `{ me { id } }`})
		m := c.read(5 * time.Second)
		assert.Equal(t, "error", m.Type)
		assert.Equal(t, "1", m.ID)
	})
	t.Run("invalid JSON is a connection_error, not a close", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		require.NoError(t, c.conn.WriteMessage(websocket.TextMessage, []byte("{oops")))
		assert.Equal(t, "connection_error", c.read(5*time.Second).Type)
		c.init("")
	})
	t.Run("unknown type is an error", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.init("")
		c.send("hello", "7", nil)
		m := c.read(5 * time.Second)
		assert.Equal(t, "error", m.Type)
		assert.Equal(t, "7", m.ID)
	})
	t.Run("start for a running id replaces it", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.init(token)
		c.subscribe("x", `subscription { statusPosted { id } }`, nil)
		c.subscribe("x", `subscription { statusPosted(after: "0") { text } }`, nil)
		s.post(t, token, "one")
		m := c.read(5 * time.Second)
		assert.Equal(t, "data", m.Type)
		assert.Contains(t, string(m.Payload), `"text":"one"`)
		// Nothing more but keepalives (a ka may fall in this window).
		for {
			m, err := c.tryRead(300 * time.Millisecond)
			if err != nil {
				break
			}
			assert.Equal(t, "ka", m.Type, "the replaced operation delivers nothing: %s", m.Payload)
		}
	})
	t.Run("validation error", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.init("")
		c.subscribe("v", `subscription { nope }`, nil)
		m := c.read(5 * time.Second)
		assert.Equal(t, "error", m.Type)
		assert.Contains(t, string(m.Payload), "GRAPHQL_VALIDATION_FAILED")
	})
	t.Run("connection_terminate closes normally", func(t *testing.T) {
		c := dialWS(t, s, "graphql-ws", nil)
		c.init("")
		c.send("connection_terminate", "", nil)
		code, _ := c.closeCode(5 * time.Second)
		assert.Equal(t, websocket.CloseNormalClosure, code)
	})
}

// TestTokenExpiryClosesConnection checks that a connection whose token
// expires is closed with 4403, after which the standard client reconnects
// (with a fresh token).
func TestTokenExpiryClosesConnection(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-transport-ws", nil)
	c.init(s.mintToken(t, "brief", 2*time.Second))
	code, reason := c.closeCode(10 * time.Second)
	assert.Equal(t, 4403, code)
	assert.Equal(t, "Token expired", reason)
}

// TestUpgradeRefusals checks refusals at the HTTP handshake.
func TestUpgradeRefusals(t *testing.T) {
	s := startServer(t, nil)
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
	_, resp, err := d.Dial(s.WS(), http.Header{"Origin": {"https://elsewhere.example"}})
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
}
