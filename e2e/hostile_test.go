package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Input hygiene against the real server: what a hostile client can put in
// a name, a text, a KPI name or a WebSocket message is normalised or
// refused, as docs/design.md ("Names are normalised; look-alikes are
// refused where they can be told apart") and docs/protocol.md say.

// TestNamesAreNormalisedOrRefused: signIn stores a name as it will be
// displayed (compatibility variants and spaces normalised) and refuses
// invisible, reordering and control characters and mixed-script words; a
// room's name follows the same rules, so a look-alike of an existing room
// is that room's name, and in use.
func TestNamesAreNormalisedOrRefused(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct{ in, want string }{
		{"Ａｄａ", "Ada"},
		{"𝐀𝐝𝐦𝐢𝐧", "Admin"},
		{"  Ada \u3000 Lovelace ", "Ada Lovelace"},
		{"Zoe\u0308 ❤️", "Zoë ❤"},
		{"Алиса Smith", "Алиса Smith"},
	} {
		u := s.chatUser(t, tc.in)
		assert.Equal(t, tc.want, u.Name, "signIn(%q)", tc.in)
		var me struct{ Me user }
		s.mustDo(t, u.token, `{ me { id name } }`, nil, &me)
		assert.Equal(t, tc.want, me.Me.Name, "stored as returned")
	}
	for _, name := range []string{
		"evil\u202Etxt.exe", // right-to-left override
		"Ad\u200Ba",         // zero-width space
		"Ad\u200Da",         // zero-width joiner
		"\u2800",            // blank braille pattern
		"Ada\x00",           // NUL
		"Ada\nLovelace",     // newline
		"Аda",               // Cyrillic А in a Latin word
		strings.Repeat("ﬀ", 26),
	} {
		r := s.do(t, "", `mutation($n: String!) { signIn(name: $n) { token } }`, map[string]any{"n": name})
		require.Len(t, r.Errors, 1, "signIn(%q)", name)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code(), "signIn(%q): %s", name, r.Errors[0].Message)
		assert.JSONEq(t, "null", string(r.Data))
	}
	searcher := s.chatUser(t, "searcher")
	var found struct{ Users []user }
	s.mustDo(t, searcher.token, `{ users(search: "ad") { name } }`, nil, &found)
	assert.ElementsMatch(t, []string{"Ada", "Admin", "Ada Lovelace"}, names(found.Users), "no refused name was stored")

	for _, name := range []string{"Ｇｅｎｅｒａｌ", "GENERAL", "ｇｅｎｅｒａｌ"} {
		r := s.do(t, searcher.token, `mutation($n: String!) { createRoom(name: $n) { id } }`, map[string]any{"n": name})
		require.Len(t, r.Errors, 1, "createRoom(%q)", name)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
		assert.Contains(t, r.Errors[0].Message, "exists already", "a look-alike of general is general")
	}
	r := s.do(t, searcher.token, `mutation($n: String!) { createRoom(name: $n) { id } }`, map[string]any{"n": "gen\u200Beral"})
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	assert.Equal(t, "Lobby", s.createRoom(t, searcher.token, "Ｌｏｂｂｙ").Name)
}

// TestTextsRefuseControlCharacters: statuses and messages keep newlines
// and tabs (CRLF becomes LF) and refuse every other control character;
// nothing refused is stored.
func TestTextsRefuseControlCharacters(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0", "LIMIT_MESSAGES": "0"})
	ada := s.chatUser(t, "Ada")
	st := s.post(t, ada.token, "line one\r\n\tline two")
	assert.Equal(t, "line one\n\tline two", st.Text)
	general := s.generalRoom(t)
	for _, text := range []string{"\x1b[2Jcleared", "ding\x07", "a\rb", "a\u0085b", "nul\x00"} {
		r := s.do(t, ada.token, `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": text})
		require.Len(t, r.Errors, 1, "postStatus(%q)", text)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
		r = s.do(t, ada.token, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`,
			map[string]any{"r": general.ID, "t": text})
		require.Len(t, r.Errors, 1, "postMessage(%q)", text)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	}
	var d struct {
		Statuses struct{ Edges []struct{ Node status } }
	}
	s.mustDo(t, "", `{ statuses(first: 10) { edges { node { `+statusFields+` } } } }`, nil, &d)
	require.Len(t, d.Statuses.Edges, 1, "only the valid status was stored")
	assert.Empty(t, s.history(t, ada.token, general.ID), "no refused message was stored")
}

// TestKPINamesFollowTheirPattern: a module or key name that cannot exist
// is BAD_USER_INPUT in queries and in the kpiUpdated subscription, and the
// error does not echo a large input back; a well-formed unknown module is
// empty.
func TestKPINamesFollowTheirPattern(t *testing.T) {
	s := startOpsServer(t, nil)
	s.record(t, s.publisher, kv("finance", "revenue", 10))
	huge := strings.Repeat("x", 10000)
	for _, tc := range []struct {
		query string
		vars  map[string]any
	}{
		{`query($m: String!) { moduleKPIs(module: $m) { key } }`, map[string]any{"m": "Finance"}},
		{`query($m: String!) { moduleKPIs(module: $m) { key } }`, map[string]any{"m": huge}},
		{`query($m: String!) { moduleKPIs(module: $m) { key } }`, map[string]any{"m": "ｆｉｎａｎｃｅ"}},
		{`query($m: String!, $k: String!) { kpiHistory(module: $m, key: $k) { value } }`, map[string]any{"m": "finance", "k": "Revenue!"}},
		{`query($m: String!, $k: String!) { kpiHistory(module: $m, key: $k) { value } }`, map[string]any{"m": "fin ance", "k": "revenue"}},
	} {
		r := s.do(t, "", tc.query, tc.vars)
		require.Len(t, r.Errors, 1, "%s %v", tc.query, tc.vars)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code(), r.Errors[0].Message)
		assert.Less(t, len(r.Errors[0].Message), 200, "the input is not echoed whole")
	}
	assert.Empty(t, s.moduleKPIs(t, "nosuchmodule"), "a well-formed unknown module is empty")

	c := s.chatWS(t, "")
	c.subscribe("bad", `subscription($m: String!) { kpiUpdated(module: $m) { module } }`, map[string]any{"m": "Finance"})
	assert.Equal(t, "BAD_USER_INPUT", firstErrorCode(t, c, "bad"))
	c.subscribe("good", `subscription($m: String!) { kpiUpdated(module: $m) { module kpis { key } } }`, map[string]any{"m": "finance"})
	var got struct {
		Module string
		KPIs   []struct{ Key string }
	}
	c.nextData("good", "kpiUpdated", &got, 10*time.Second)
	assert.Equal(t, "finance", got.Module)
}

// firstErrorCode reads operation id's first message, which must carry an
// error (an error message, or a next with errors, then its complete), and
// returns its code.
func firstErrorCode(t *testing.T, c *wsClient, id string) string {
	t.Helper()
	m := c.read(10 * time.Second)
	require.Equal(t, id, m.ID)
	var errs []gqlError
	switch m.Type {
	case "error":
		require.NoError(t, json.Unmarshal(m.Payload, &errs))
	case "next":
		var p struct{ Errors []gqlError }
		require.NoError(t, json.Unmarshal(m.Payload, &p))
		errs = p.Errors
		end := c.read(10 * time.Second)
		assert.Equal(t, wsMessage{Type: "complete", ID: id}, end)
	}
	require.NotEmpty(t, errs, "%s %s", m.Type, m.Payload)
	return errs[0].Code()
}

// TestLegacyProtocolUnderHostileInput: on the legacy protocol an id over
// 128 bytes is an invalid message (connection_error, the connection
// stays), and text that is not UTF-8 closes with 1007.
func TestLegacyProtocolUnderHostileInput(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-ws", nil)
	c.init("")
	long := strings.Repeat("i", 129)
	c.subscribe(long, `{ __typename }`, nil)
	m := c.read(5 * time.Second)
	assert.Equal(t, "connection_error", m.Type)
	assert.JSONEq(t, `{"message":"Invalid message received"}`, string(m.Payload))
	c.subscribe(long[:128], `{ __typename }`, nil)
	m = c.read(5 * time.Second)
	assert.Equal(t, "data", m.Type, "an id of 128 bytes is fine")
	assert.Equal(t, long[:128], m.ID)

	require.NoError(t, c.conn.WriteMessage(websocket.TextMessage, []byte("{\"type\":\"start\",\"id\":\"\xff\"}")))
	code, reason := c.closeCode(5 * time.Second)
	assert.Equal(t, websocket.CloseInvalidFramePayloadData, code)
	assert.Equal(t, "Invalid UTF-8", reason)
}

// TestConnectionsPerAddressUnderParallelHandshakes: LIMIT_CONNS_PER_ADDR
// holds exactly when handshakes from one address race, and IPv6 clients
// (here named by a trusted proxy's X-Forwarded-For) are counted by /64.
func TestConnectionsPerAddressUnderParallelHandshakes(t *testing.T) {
	const limit, extra = 4, 16
	s := startServer(t, map[string]string{"LIMIT_CONNS_PER_ADDR": "4", "TRUSTED_PROXIES": "127.0.0.1"})
	for _, clients := range [][]string{
		{"198.51.100.7"},
		{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3", "2001:db8:1:2:a:b:c:d"}, // one /64
		{""}, // the loopback peer itself
	} {
		codes := make(chan int, limit+extra)
		var wg sync.WaitGroup
		for i := range limit + extra {
			wg.Go(func() { codes <- dialFrom(t, s, clients[i%len(clients)]) })
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for c := range codes {
			count[c]++
		}
		assert.Equal(t, map[int]int{http.StatusSwitchingProtocols: limit, http.StatusTooManyRequests: extra}, count, "from %v", clients)
	}
	assert.Equal(t, http.StatusSwitchingProtocols, dialFrom(t, s, "2001:db8:1:3::1"), "the next /64 has places of its own")
}

// dialFrom opens a graphql-transport-ws connection to s as the client a
// trusted proxy names in X-Forwarded-For ("" for none), kept open until the
// test ends, and returns the handshake's HTTP status.
func dialFrom(t *testing.T, s *testServer, forwardedFor string) int {
	h := http.Header{}
	if forwardedFor != "" {
		h.Set("X-Forwarded-For", forwardedFor)
	}
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(s.WS(), h)
	if err != nil {
		if resp == nil {
			t.Errorf("dial: %v", err)
			return 0
		}
		return resp.StatusCode
	}
	t.Cleanup(func() { _ = c.Close() })
	return resp.StatusCode
}
