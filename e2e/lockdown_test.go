package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// productionEnv is a production server's environment (ENV=production
// needs a signing key of its own) with more settings.
func productionEnv(more map[string]string) map[string]string {
	env := map[string]string{"ENV": "production", "AUTH_SECRET": strings.Repeat("lockdown-test-key-", 3)}
	maps.Copy(env, more)
	return env
}

// noRequestLimit switches the per-user operation limit off for tests that
// send many documents from one client as fast as they can.
var noRequestLimit = map[string]string{"LIMIT_REQUESTS": "0"}

// suggestionCases are documents that name something almost as the schema
// does: in development gqlparser answers with the suggestion given ("Did
// you mean …?"), which reveals a name the client did not send (reveals;
// a directive's only argument is the one it must send anyway). The last
// cases are those gqlparser never suggests for.
var suggestionCases = []struct {
	name, query, suggestion, reveals string
	vars                             map[string]any
}{
	{name: "a field", query: `{ statuse { edges { cursor } } }`, suggestion: `Did you mean "statuses"?`, reveals: "statuses"},
	{name: "a field of a type", query: `{ me { nam } }`, suggestion: `Did you mean "name"?`, reveals: `"name"`},
	{name: "an argument", query: `{ statuses(frist: 1) { edges { cursor } } }`, suggestion: `Did you mean "first"?`, reveals: `"first"`},
	{name: "a directive's argument", query: `{ me @include(if: true, iff: true) { id } }`, suggestion: `Did you mean "if"?`},
	{name: "a fragment's type", query: `{ me { ...F } } fragment F on Usr { id }`, suggestion: `Did you mean "User"?`, reveals: `"User"`},
	{name: "an enum value", query: `mutation { sendNotification(input: {title: "t", level: WARNIN}) { id } }`, suggestion: `Did you mean the enum value "WARNING"?`, reveals: "WARNING"},
	{name: "an input field", query: `mutation { sendNotification(input: {title: "t", lnk: "/x"}) { id } }`, suggestion: `Did you mean "link"?`, reveals: `"link"`},
	{name: "a leaf given a selection", query: `{ me { id { x } } }`},
	{name: "an enum value in a variable", query: `mutation($l: NotificationLevel) { sendNotification(input: {title: "t", level: $l}) { id } }`, vars: map[string]any{"l": "WARNIN"}},
	{name: "a variable's type", query: `query($n: Inr) { statuses(first: $n) { edges { cursor } } }`},
	{name: "an inline fragment's type", query: `{ me { ... on Usr { id } } }`},
	{name: "a directive", query: `{ me @inclde(if: true) { id } }`},
	{name: "a variable", query: `{ statuses(first: $frist) { edges { cursor } } }`},
	{name: "a fragment", query: `{ me { ...UserFeilds } } fragment UserFields on User { id }`},
}

// operationErrors runs query as operation id on c and returns its error
// messages.
func (c *wsClient) operationErrors(id, query string, vars map[string]any) string {
	c.tb.Helper()
	c.subscribe(id, query, vars)
	m := c.read(5 * time.Second)
	require.Equal(c.tb, id, m.ID)
	var errs []gqlError
	switch m.Type {
	case "error":
		require.NoError(c.tb, json.Unmarshal(m.Payload, &errs))
	case "next", "data":
		var p struct{ Errors []gqlError }
		require.NoError(c.tb, json.Unmarshal(m.Payload, &p))
		errs = p.Errors
	}
	require.NotEmpty(c.tb, errs, "%s %s", m.Type, m.Payload)
	return messages(errs)
}

func messages(errs []gqlError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// TestProductionSuggestsNothing: in production no error message suggests a
// name the client did not send, for fields, arguments, types, enum values,
// input fields, directives, variables or fragments, over HTTP and over both
// WebSocket protocols; in development the same documents get their
// suggestions (so the cases do exercise them).
func TestProductionSuggestsNothing(t *testing.T) {
	dev := startServer(t, noRequestLimit)
	prod := startServer(t, productionEnv(noRequestLimit))
	token := prod.mintToken(t, "ops", time.Hour, models.RoleAdmin) // guests cannot sign in in production
	sockets := map[string]*wsClient{}
	for _, protocol := range []string{"graphql-transport-ws", "graphql-ws"} {
		sockets[protocol] = dialWS(t, prod, protocol, nil)
		sockets[protocol].init(token)
	}
	for i, c := range suggestionCases {
		t.Run(c.name, func(t *testing.T) {
			if c.suggestion != "" {
				r := dev.do(t, "", c.query, c.vars)
				assert.Contains(t, messages(r.Errors), c.suggestion, "development suggests")
			}
			r := prod.do(t, token, c.query, c.vars)
			require.NotEmpty(t, r.Errors)
			answers := map[string]string{"HTTP": messages(r.Errors)}
			for protocol, ws := range sockets {
				answers[protocol] = ws.operationErrors(fmt.Sprint(i), c.query, c.vars)
			}
			for over, msgs := range answers {
				assert.NotContains(t, msgs, "Did you mean", over)
				if c.reveals != "" {
					assert.NotContains(t, msgs, c.reveals, over)
				}
			}
			t.Logf("%s", answers["HTTP"])
		})
	}
}

// TestPlaygroundFollowsTheSetting: /playground is served in development and
// answers 404 in production, unless PLAYGROUND says otherwise.
func TestPlaygroundFollowsTheSetting(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want int
	}{
		{"development", nil, http.StatusOK},
		{"turned off", map[string]string{"PLAYGROUND": "false"}, http.StatusNotFound},
		{"production", productionEnv(nil), http.StatusNotFound},
		{"turned on in production", productionEnv(map[string]string{"PLAYGROUND": "true"}), http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, c.env)
			resp, err := http.Get(s.URL + "/playground")
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, c.want, resp.StatusCode)
			if c.want == http.StatusOK {
				assert.Contains(t, string(body), "graphiql")
			}
			// Its files follow the page.
			status, _, err := get(s.URL + "/playground/graphiql.js")
			require.NoError(t, err)
			assert.Equal(t, c.want, status, "/playground/graphiql.js")
		})
	}
}

// get answers a GET of url with its status and body, or the error.
func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestMetricsOnTheirOwnListener: with METRICS_ADDR, /metrics is served
// there and nowhere else; the listener is logged and stops with the
// server; and deploy/nginx.conf refuses /metrics either way.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	addr := freeLoopbackAddr(t)
	s := startServer(t, map[string]string{"METRICS_ADDR": addr})
	code, body, err := get("http://" + addr + "/metrics")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "switchboard_websocket_connections")
	code, _, err = get("http://" + addr + "/healthz")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code, "the metrics listener serves the metrics alone")
	code, _, err = get(s.URL + "/metrics")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code, "the public listener does not serve them")
	assert.Contains(t, s.logs.String(), "msg=\"serving metrics\" addr="+addr)

	proxy := startNginx(t, s)
	code, _, err = get(proxy + "/metrics")
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, code, "nginx refuses /metrics")
	code, _, err = get(proxy + "/healthz")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)

	s.stop()
	_, _, err = get("http://" + addr + "/metrics")
	assert.Error(t, err, "the metrics listener stopped with the server")
}

// persisted posts query with its automatic-persisted-query hash; with
// sendQuery false it sends the hash alone.
func (s *testServer) persisted(tb testing.TB, query string, sendQuery bool) gqlResponse {
	tb.Helper()
	sum := sha256.Sum256([]byte(query))
	body := map[string]any{"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}}
	if sendQuery {
		body["query"] = query
	}
	raw, err := json.Marshal(body)
	require.NoError(tb, err)
	resp, err := http.Post(s.URL+"/graphql", "application/json", bytes.NewReader(raw))
	require.NoError(tb, err)
	defer resp.Body.Close()
	var out gqlResponse
	require.NoError(tb, json.NewDecoder(resp.Body).Decode(&out))
	out.Status = resp.StatusCode
	return out
}

// TestQueryCachesStayBounded: documents enter the parsed-query and the
// persisted-query caches only once they have parsed and validated, and
// however many large distinct documents a client sends, the caches keep
// to their bytes and the server's heap stays bounded (read after they were
// all sent). Each document is 7,000 AST nodes of KPI inputs: the thousand
// entries the caches had before would have held all of them, some 300 MB.
func TestQueryCachesStayBounded(t *testing.T) {
	s := startProcess(t, noRequestLimit)
	cached := func() (float64, float64) {
		return s.metric(t, `switchboard_query_cache_bytes{cache="parsed"}`), s.metric(t, `switchboard_query_cache_bytes{cache="persisted"}`)
	}

	tooLong := "{ " + strings.Repeat("me { id } ", 3000) + "}"
	r := s.persisted(t, tooLong, true)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, "GRAPHQL_PARSE_FAILED", r.Errors[0].Code())
	r = s.persisted(t, tooLong, false)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, "PERSISTED_QUERY_NOT_FOUND", r.Errors[0].Code(), "a document over the token limit was not kept")
	parsed, persisted := cached()
	assert.Zero(t, parsed+persisted, "neither cache took it")

	small := `{ statuses(first: 1) { edges { cursor } } }`
	assert.Empty(t, s.persisted(t, small, true).Errors)
	assert.Empty(t, s.persisted(t, small, false).Errors, "a valid document is kept by its hash")

	heapBefore := s.metric(t, "go_memstats_heap_alloc_bytes")
	inputs := strings.Repeat(`{module: "m", key: "k", value: 1} `, 880)
	const documents = 150
	start := time.Now()
	for i := range documents {
		doc := fmt.Sprintf(`mutation Fill%d { recordKPIs(inputs: [%s]) { key } }`, i, inputs)
		r := s.persisted(t, doc, true)
		require.NotEmpty(t, r.Errors)
		require.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code(), "it parsed and validated, and ran")
	}
	elapsed := time.Since(start)
	parsed, persisted = cached()
	heapAfter := s.metric(t, "go_memstats_heap_alloc_bytes")
	t.Logf("%d documents of %d bytes in %s: parsed cache %.1f MiB, persisted cache %.1f MiB; heap %.0f MiB before, %.0f MiB after",
		documents, len(inputs)+60, elapsed.Round(time.Millisecond), parsed/(1<<20), persisted/(1<<20), heapBefore/(1<<20), heapAfter/(1<<20))
	assert.LessOrEqual(t, parsed, float64(16<<20))
	assert.Greater(t, parsed, float64(8<<20), "the parsed cache filled up")
	assert.LessOrEqual(t, persisted, float64(4<<20))
	assert.Greater(t, persisted, float64(2<<20), "the persisted cache filled up")
	assert.Less(t, heapAfter, heapBefore+128<<20, "the heap stays within the caches' bounds and some garbage")
	assert.Empty(t, s.persisted(t, `{ statuses(first: 2) { edges { cursor } } }`, true).Errors, "the server still serves")
}
