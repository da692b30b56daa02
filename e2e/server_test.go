package e2e

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // to break the database under a running server
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/auth"
)

// TestHTTPAPI drives GraphQL over HTTP POST: a status's text is trimmed;
// each invalid request is refused with its error code (and HTTP status
// where it has one) and stores nothing, while the valid ones succeed;
// statuses page newest first; and after all of it the server still answers
// and has logged no panic.
func TestHTTPAPI(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0"}) // one user posts eleven at once
	token := s.signIn(t, "Ann")
	first := s.post(t, token, "  first  ")
	require.Equal(t, "first", first.Text, "text is trimmed")
	require.Equal(t, "Ann", first.Author.Name)

	long := strings.Repeat("é", 500)
	for _, tc := range httpAPICases(token, long) {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.token, tc.query, tc.vars)
			if tc.status != 0 {
				assert.Equal(t, tc.status, r.Status)
			}
			if tc.wantCode == "" {
				require.Empty(t, r.Errors)
				return
			}
			require.NotEmpty(t, r.Errors, "data: %s", r.Data)
			assert.Equal(t, tc.wantCode, r.Errors[0].Code(), "message: %s", r.Errors[0].Message)
			assert.Contains(t, r.Errors[0].Message, tc.wantMsg)
		})
	}

	t.Run("nothing stored on error", func(t *testing.T) {
		var d struct {
			Statuses struct {
				Edges []struct{ Node status }
			}
		}
		s.mustDo(t, "", `{ statuses(first: 100) { edges { node { id text } } } }`, nil, &d)
		require.Len(t, d.Statuses.Edges, 2, "only the two valid posts exist")
		assert.Equal(t, long, d.Statuses.Edges[0].Node.Text)
		assert.Equal(t, "first", d.Statuses.Edges[1].Node.Text)
	})

	t.Run("paging newest first", func(t *testing.T) {
		for i := range 5 {
			s.post(t, token, fmt.Sprintf("page %d", i))
		}
		texts := pagedStatusTexts(t, s)
		assert.Equal(t, []string{"page 4", "page 3", "page 2", "page 1", "page 0", long, "first"}, texts)
	})

	t.Run("internal details never reach the client", func(t *testing.T) {
		r := s.do(t, "", `{ statuses(first: 1) { edges { node { id } } } }`, nil)
		require.Empty(t, r.Errors)
		assert.NotContains(t, s.logs.String(), "panic")
	})
}

// httpAPICase is one request of TestHTTPAPI and its expected answer.
type httpAPICase struct {
	name     string
	token    string
	query    string
	vars     map[string]any
	wantCode string // "" means success
	wantMsg  string
	status   int // HTTP status, 0 = don't care
}

// httpAPICases are TestHTTPAPI's requests, made with token where they need
// one; long is a 500-character text. Two of them post: the rest store
// nothing.
func httpAPICases(token, long string) []httpAPICase {
	return []httpAPICase{
		{name: "me without token is null", query: `{ me { id } }`},
		{name: "me with token", token: token, query: `{ me { name } }`},
		{name: "invalid token refused", token: "not-a-token", query: `{ me { id } }`, wantCode: "UNAUTHENTICATED", status: http.StatusUnauthorized},
		{name: "post needs a token", query: `mutation { postStatus(text: "x") { id } }`, wantCode: "UNAUTHENTICATED"},
		{name: "empty text", token: token, query: `mutation { postStatus(text: "") { id } }`, wantCode: "BAD_USER_INPUT", wantMsg: "empty"},
		{name: "blank text", token: token, query: `mutation { postStatus(text: " \n\t ") { id } }`, wantCode: "BAD_USER_INPUT", wantMsg: "empty"},
		{name: "501 characters", token: token, query: `mutation($t: String!) { postStatus(text: $t) { id } }`, vars: map[string]any{"t": long + "x"}, wantCode: "BAD_USER_INPUT", wantMsg: "501 characters"},
		{name: "500 multibyte characters fit", token: token, query: `mutation($t: String!) { postStatus(text: $t) { id } }`, vars: map[string]any{"t": long}},
		{name: "empty name", query: `mutation { signIn(name: "  ") { token } }`, wantCode: "BAD_USER_INPUT"},
		{name: "first too large", query: `{ statuses(first: 101) { edges { cursor } } }`, wantCode: "BAD_USER_INPUT", wantMsg: "between 1 and 100"},
		{name: "first zero", query: `{ statuses(first: 0) { edges { cursor } } }`, wantCode: "BAD_USER_INPUT"},
		{name: "foreign cursor", query: `{ statuses(after: "bm90LWEtY3Vyc29y") { edges { cursor } } }`, wantCode: "BAD_USER_INPUT", wantMsg: "cursor"},
		{name: "unknown field", query: `{ nope }`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "syntax error", query: `{`, wantCode: "GRAPHQL_PARSE_FAILED"},
	}
}

// pagedStatusTexts pages through the statuses three at a time, newest
// first, each page after the last one's endCursor while hasNextPage says
// there is more (10 pages at the most), and returns their texts in order.
func pagedStatusTexts(t *testing.T, s *testServer) []string {
	t.Helper()
	type page struct {
		Statuses struct {
			Edges []struct {
				Cursor string
				Node   status
			}
			PageInfo struct {
				HasNextPage bool
				EndCursor   *string
			}
		}
	}
	var texts []string
	var after any
	for range 10 {
		var p page
		s.mustDo(t, "", `query($a: String) { statuses(first: 3, after: $a) { edges { cursor node { text } } pageInfo { hasNextPage endCursor } } }`,
			map[string]any{"a": after}, &p)
		for _, e := range p.Statuses.Edges {
			texts = append(texts, e.Node.Text)
		}
		if !p.Statuses.PageInfo.HasNextPage {
			break
		}
		after = *p.Statuses.PageInfo.EndCursor
	}
	return texts
}

// TestHTTPRoutes: GET runs queries but not mutations (405, Allow: POST),
// and the schema, health, readiness, metrics and page routes answer.
func TestHTTPRoutes(t *testing.T) {
	s := startServer(t, nil)
	t.Run("GET runs queries but not mutations", func(t *testing.T) {
		resp, err := http.Get(s.URL + `/graphql?query=` + urlQuery(`{ statuses(first: 1) { edges { cursor } } }`))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		resp, err = http.Get(s.URL + `/graphql?query=` + urlQuery(`mutation { signIn(name: "x") { token } }`))
		require.NoError(t, err)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, "POST", resp.Header.Get("Allow"))
		assert.Contains(t, string(body), "GET runs queries only")
	})

	t.Run("Time says what format it follows", func(t *testing.T) {
		var d struct {
			Type struct {
				SpecifiedByURL string `json:"specifiedByURL"`
			} `json:"__type"`
		}
		s.mustDo(t, "", `{ __type(name: "Time") { specifiedByURL } }`, nil, &d)
		assert.Equal(t, "https://scalars.graphql.org/andimarek/date-time", d.Type.SpecifiedByURL)
	})

	t.Run("SDL, health and metrics", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{
			{"/schema.graphql", "statusPosted(after: ID): Status!"},
			{"/schema.graphql", `scalar Time @specifiedBy(url: "https://scalars.graphql.org/andimarek/date-time")`},
			{"/healthz", `"version":"dev"`},
			{"/readyz", `"ready"`},
			{"/metrics", "switchboard_websocket_connections"},
			{"/", "<title>"},
		} {
			resp, err := http.Get(s.URL + c.path)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, c.path)
			assert.Contains(t, string(body), c.want, c.path)
		}
	})
}

func urlQuery(q string) string {
	return strings.NewReplacer(" ", "%20", "{", "%7B", "}", "%7D", `"`, "%22", "(", "%28", ")", "%29", ":", "%3A").Replace(q)
}

func TestCORS(t *testing.T) {
	s := startServer(t, map[string]string{"ALLOWED_ORIGINS": "https://app.example.com"})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	ok := preflight("https://app.example.com")
	assert.Equal(t, "https://app.example.com", ok.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, ok.Header.Get("Access-Control-Allow-Headers"), "Authorization")
	evil := preflight("https://evil.example.com")
	assert.Empty(t, evil.Header.Get("Access-Control-Allow-Origin"))

	// WebSocket upgrades from other origins are refused (cross-site WebSocket hijacking).
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
	_, resp, err := d.Dial(s.WS(), http.Header{"Origin": {"https://evil.example.com"}})
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	c, _, err := d.Dial(s.WS(), http.Header{"Origin": {"https://app.example.com"}})
	require.NoError(t, err)
	c.Close()
}

func TestWebSocketSubprotocols(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0"}) // one user posts six at once
	token := s.signIn(t, "Wes")
	last := "0"
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws", ""} {
		name := proto
		if name == "" {
			name = "none offered (legacy)"
		}
		t.Run(name, func(t *testing.T) {
			c := dialWS(t, s, proto, nil)
			ack := c.init(token)
			assert.JSONEq(t, `{"user":{"id":"1","name":"Wes"},"version":"dev"}`, string(ack.Payload))
			// after makes the test independent of when the subscription
			// becomes live: the post is replayed or delivered live.
			c.subscribe("s1", `subscription($a: ID) { statusPosted(after: $a) { `+statusFields+` } }`, map[string]any{"a": last})
			posted := s.post(t, token, "hello "+name)
			got := c.nextStatus("s1", 5*time.Second)
			assert.Equal(t, posted, got)
			if proto == "graphql-transport-ws" {
				c.send("complete", "s1", nil)
				c.send("ping", "", map[string]any{"n": 1})
				sawPong := false
				for !sawPong {
					_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					var m wsMessage
					require.NoError(t, c.conn.ReadJSON(&m))
					sawPong = m.Type == "pong"
					if sawPong {
						assert.JSONEq(t, `{"n":1}`, string(m.Payload), "pong echoes the ping's payload")
					}
				}
			} else {
				c.send("stop", "s1", nil)
				m := c.read(5 * time.Second)
				require.Equal(t, "complete", m.Type, "stop is confirmed: %s", m.Payload)
				require.Equal(t, "s1", m.ID)
			}
			// Nothing but a complete arrives for the stopped operation.
			last = s.post(t, token, "after stop").ID
			for {
				m, err := c.tryRead(300 * time.Millisecond)
				if err != nil {
					break
				}
				assert.Contains(t, []string{"complete", "ka", "ping"}, m.Type, "after stop, a complete or a keepalive only: %s %s", m.Type, m.Payload)
			}
		})
	}
}

// TestBadTokensAreRefusedAtBothEntryPoints: a token that is forged, signed
// with another key or algorithm, unsigned (alg none), from another issuer,
// expired, or without a session the server knows for its user, is refused
// over HTTP (401, UNAUTHENTICATED) and in connection_init on both WebSocket
// protocols (4403; connection_error on the legacy one). A valid token in
// the URL is never read.
func TestBadTokensAreRefusedAtBothEntryPoints(t *testing.T) {
	key := strings.Repeat("s", 32)
	s := startServer(t, map[string]string{"AUTH_SECRET": key})
	good := s.signIn(t, "tokens")
	other := s.signIn(t, "other")
	var me struct{ Me struct{ ID string } }
	s.mustDo(t, good, `{ me { id } }`, nil, &me)
	now := time.Now().Unix()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": auth.Issuer, "sub": me.Me.ID, "iat": now, "exp": now + 3600, "name": "x", "sid": claimsOf(t, good).Session}
		change(c)
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(m, c).SignedString(key)
		require.NoError(t, err)
		return tok
	}
	parts := strings.Split(good, ".")
	same := func(jwt.MapClaims) {}
	bad := map[string]string{
		"garbage":           "not-a-token",
		"forged signature":  parts[0] + "." + parts[1] + ".AAAA",
		"another key":       sign(jwt.SigningMethodHS256, []byte(strings.Repeat("o", 32)), claims(same)),
		"alg none":          base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		"HS512":             sign(jwt.SigningMethodHS512, []byte(key), claims(same)),
		"wrong issuer":      sign(jwt.SigningMethodHS256, []byte(key), claims(func(c jwt.MapClaims) { c["iss"] = "evil" })),
		"expired":           sign(jwt.SigningMethodHS256, []byte(key), claims(func(c jwt.MapClaims) { c["exp"] = now - 60 })),
		"no session":        sign(jwt.SigningMethodHS256, []byte(key), claims(func(c jwt.MapClaims) { delete(c, "sid") })),
		"unknown session":   sign(jwt.SigningMethodHS256, []byte(key), claims(func(c jwt.MapClaims) { c["sid"] = strings.Repeat("0", 32) })),
		"another's session": sign(jwt.SigningMethodHS256, []byte(key), claims(func(c jwt.MapClaims) { c["sid"] = claimsOf(t, other).Session })),
	}
	// The control: the server's own signature over the same claims works.
	s.mustDo(t, sign(jwt.SigningMethodHS256, []byte(key), claims(same)), `{ me { id } }`, nil, nil)
	for name, token := range bad {
		t.Run(name, func(t *testing.T) {
			r := s.do(t, token, `{ me { id } }`, nil)
			assert.Equal(t, http.StatusUnauthorized, r.Status)
			require.Len(t, r.Errors, 1)
			assert.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code())
			for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
				c := dialWS(t, s, proto, nil)
				c.send("connection_init", "", map[string]any{"authorization": "Bearer " + token})
				if proto == "graphql-ws" {
					assert.Equal(t, "connection_error", c.read(5*time.Second).Type)
				}
				code, _ := c.closeCode(5 * time.Second)
				assert.Equal(t, 4403, code, proto)
			}
		})
	}

	t.Run("token in the URL", func(t *testing.T) {
		for _, param := range []string{"token", "access_token", "authorization"} {
			resp, err := http.Get(s.URL + "/graphql?query=" + urlQuery(`{ me { id } }`) + "&" + param + "=" + good)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.JSONEq(t, `{"data":{"me":null}}`, string(body), param)

			c, resp, err := (&websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}).Dial(s.WS()+"?"+param+"="+good, nil)
			require.NoError(t, err)
			_ = resp.Body.Close()
			ws := &wsClient{tb: t, conn: c}
			ack := ws.init("")
			assert.JSONEq(t, `null`, string(ackUser(t, ack.Payload)), "connected anonymously")
			_ = c.Close()
		}
	})
}

// ackUser returns the user field of a connection_ack payload.
func ackUser(t *testing.T, payload json.RawMessage) json.RawMessage {
	var p struct {
		User json.RawMessage `json:"user"`
	}
	require.NoError(t, json.Unmarshal(payload, &p))
	return p.User
}

func TestWebSocketQueriesAndErrors(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-transport-ws", nil)
	c.init("")
	// Anonymous subscribers may read the public feed, but not post.
	c.subscribe("m", `mutation { postStatus(text: "x") { id } }`, nil)
	m := c.read(5 * time.Second)
	require.Equal(t, "next", m.Type)
	assert.Contains(t, string(m.Payload), "UNAUTHENTICATED")
	c.subscribe("bad", `subscription { statusPosted(after: "-5") { id } }`, nil)
	for {
		m = c.read(5 * time.Second)
		if m.ID == "bad" && m.Type != "complete" {
			break
		}
	}
	assert.Contains(t, string(m.Payload), "BAD_USER_INPUT")
	c.subscribe("beyond", `subscription { statusPosted(after: "99") { id } }`, nil)
	for {
		m = c.read(5 * time.Second)
		if m.ID == "beyond" && m.Type != "complete" {
			break
		}
	}
	assert.Contains(t, string(m.Payload), "beyond the newest")
}

func TestShutdownClosesWebSocketsWithGoingAway(t *testing.T) {
	s := startServer(t, nil)
	c := dialWS(t, s, "graphql-transport-ws", nil)
	c.init("")
	c.subscribe("s", `subscription { statusPosted { id } }`, nil)
	go s.stop()
	code, _ := c.closeCode(10 * time.Second)
	assert.Equal(t, websocket.CloseGoingAway, code)
}

// TestLiveEqualsReplay checks that an event delivered live is byte for byte
// the event replayed from history.
func TestLiveEqualsReplay(t *testing.T) {
	s := startServer(t, nil)
	token := s.signIn(t, "Eve")
	live := dialWS(t, s, "graphql-transport-ws", nil)
	live.init("")
	live.subscribe("l", `subscription { statusPosted(after: "0") { `+statusFields+` } }`, nil)
	// Once the warm-up has arrived (replayed or live), replay is over: the
	// next status can only come through live delivery.
	s.post(t, token, "warm-up")
	live.nextStatus("l", 5*time.Second)
	s.post(t, token, "compare me")
	raw := live.read(5 * time.Second)

	replay := dialWS(t, s, "graphql-transport-ws", nil)
	replay.init("")
	replay.subscribe("l", `subscription { statusPosted(after: "1") { `+statusFields+` } }`, nil)
	again := replay.read(5 * time.Second)
	assert.Equal(t, string(raw.Payload), string(again.Payload))
	assert.Regexp(t, `"createdAt":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`, string(raw.Payload))
}

// TestRestartResume checks that a client resuming with after gets what was
// posted while the server was down, from the embedded database.
func TestRestartResume(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, map[string]string{"DATA_DIR": dir})
	token := s.signIn(t, "Rex")
	a := s.post(t, token, "before restart")
	s.stop()

	s2 := startServer(t, map[string]string{"DATA_DIR": dir})
	b := s2.post(t, token, "after restart") // the signing key survived the restart
	c := dialWS(t, s2, "graphql-transport-ws", nil)
	c.init(token)
	c.subscribe("r", `subscription($a: ID) { statusPosted(after: $a) { `+statusFields+` } }`, map[string]any{"a": a.ID})
	assert.Equal(t, b, c.nextStatus("r", 5*time.Second))
}

func TestGuestSignInCanBeTurnedOff(t *testing.T) {
	s := startServer(t, map[string]string{"GUEST_SIGNIN": "false"})
	r := s.do(t, "", `mutation { signIn(name: "x") { token } }`, nil)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, "FORBIDDEN", r.Errors[0].Code())
}

// TestIntrospectionCanBeTurnedOff: without introspection, __schema and
// __type are refused before execution (over HTTP and WebSocket) while
// __typename and /schema.graphql keep working; INTROSPECTION wins over the
// production default either way.
func TestIntrospectionCanBeTurnedOff(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		allowed bool
	}{
		{"turned off", map[string]string{"INTROSPECTION": "false"}, false},
		{"off in production", map[string]string{"ENV": "production"}, false},
		{"turned on in production", map[string]string{"ENV": "production", "INTROSPECTION": "true"}, true},
	}
	introspection := []string{
		`{ __schema { types { name } } }`,
		`{ __type(name: "Status") { name } }`,
		`{ ...F } fragment F on Query { __schema { types { name } } }`,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.env)
			for _, q := range introspection {
				r := s.do(t, "", q, nil)
				if tc.allowed {
					assert.Empty(t, r.Errors, q)
					assert.Contains(t, string(r.Data), `"Status"`, q)
					continue
				}
				require.Len(t, r.Errors, 1, q)
				assert.Equal(t, "GRAPHQL_VALIDATION_FAILED", r.Errors[0].Code(), q)
				assert.Contains(t, r.Errors[0].Message, "introspection is disabled", q)
				assert.NotContains(t, string(r.Data), "Status", q)
			}
			if !tc.allowed {
				ws := s.chatWS(t, "")
				ws.subscribe("i", introspection[0], nil)
				e := ws.operationError("i")
				assert.Equal(t, "GRAPHQL_VALIDATION_FAILED", e.Code(), "over WebSocket too")
				assert.NotContains(t, s.logs.String(), "internal error", "a refused introspection is not an internal error")
			}
			var d struct {
				Typename string `json:"__typename"`
			}
			s.mustDo(t, "", `{ __typename }`, nil, &d)
			assert.Equal(t, "Query", d.Typename, "__typename is not introspection")

			resp, err := http.Get(s.URL + "/schema.graphql")
			require.NoError(t, err)
			defer resp.Body.Close()
			sdl, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, string(sdl), "statusPosted(after: ID): Status!", "the SDL stays downloadable")
		})
	}
}

// TestInternalErrorsStayInternal breaks the database under a running server:
// the client gets INTERNAL with a request id and no detail; the log line with
// that id has the detail.
func TestInternalErrorsStayInternal(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, map[string]string{"DATA_DIR": dir})
	raw, err := sql.Open("sqlite", filepath.Join(dir, "switchboard.db"))
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Exec("DROP TABLE users")
	require.NoError(t, err)

	r := s.do(t, "", `mutation { signIn(name: "x") { token } }`, nil)
	require.Len(t, r.Errors, 1)
	e := r.Errors[0]
	assert.Equal(t, "INTERNAL", e.Code())
	assert.Equal(t, "internal error", e.Message)
	id, _ := e.Extensions["requestId"].(string)
	require.NotEmpty(t, id)
	assert.NotContains(t, fmt.Sprint(r), "users", "no SQL reaches the client")
	assert.Regexp(t, `(?m)^.*no such table: users.*request_id=`+id+`$`, s.logs.String(), "the log has the cause, under the id the client saw")
}

// TestBadArgumentsGetBadUserInput: every argument with a range or a length
// refuses what is outside it with BAD_USER_INPUT and a message naming it,
// and changes nothing.
func TestBadArgumentsGetBadUserInput(t *testing.T) {
	s := startServer(t, nil)
	token := s.signIn(t, "careful")
	general := s.generalRoom(t)
	r := map[string]any{"r": general.ID}
	cases := []struct {
		query string
		vars  map[string]any
		names string // a word the message must contain
	}{
		{`{ statuses(first: 0) { edges { cursor } } }`, nil, "first"},
		{`{ statuses(first: 101) { edges { cursor } } }`, nil, "first"},
		{`{ statuses(after: "not a cursor") { edges { cursor } } }`, nil, "after"},
		{`query($r: ID!) { messages(roomId: $r, last: 0) { edges { cursor } } }`, r, "last"},
		{`query($r: ID!) { messages(roomId: $r, before: "nope") { edges { cursor } } }`, r, "before"},
		{`{ users(search: "a", first: 51) { id } }`, nil, "first"},
		{`{ users(search: "` + strings.Repeat("a", 51) + `") { id } }`, nil, "search"},
		{`{ kpiHistory(module: "finance", key: "cash", limit: 0) { value } }`, nil, "limit"},
		{`{ dashboard(topN: 21) { generatedAt } }`, nil, "topN"},
		{`{ notifications(first: 0) { edges { cursor } } }`, nil, "first"},
		{`{ rooms(first: 101) { edges { cursor } } }`, nil, "first"},
		{`{ rooms(after: "bm9wZQ") { edges { cursor } } }`, nil, "after"},
		{`{ rooms(search: "` + strings.Repeat("s", 51) + `") { edges { cursor } } }`, nil, "search"},
		{`query($r: ID!) { online(roomId: $r, first: 101) { id } }`, r, "first"},
		{`mutation { createRoom(name: "` + strings.Repeat("r", 51) + `") { id } }`, nil, "name"},
		{`mutation($r: ID!) { postMessage(roomId: $r, text: "` + strings.Repeat("m", 2001) + `") { id } }`, r, "2001"},
		{`mutation($r: ID!) { postMessage(roomId: $r, text: "  ") { id } }`, r, "empty"},
	}
	for _, c := range cases {
		got := s.do(t, token, c.query, c.vars)
		if assert.NotEmpty(t, got.Errors, c.query) {
			assert.Equal(t, "BAD_USER_INPUT", got.Errors[0].Code(), "%s: %s", c.query, got.Errors[0].Message)
			assert.Contains(t, got.Errors[0].Message, c.names, c.query)
		}
	}
	assert.Len(t, s.rooms(t, token, ""), 1, "no room was created")
	var msgs struct {
		Messages struct{ Edges []struct{ Cursor string } }
	}
	s.mustDo(t, token, `query($r: ID!) { messages(roomId: $r) { edges { cursor } } }`, r, &msgs)
	assert.Empty(t, msgs.Messages.Edges, "no message was stored")
}
