package e2e

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyMarker is in the body of every malformed request below: no log line
// and no answer may hold it.
const bodyMarker = "body-marker-3c9e"

// mistake is one malformed request and the answer it must get.
type mistake struct {
	name        string
	method      string // POST when empty
	contentType string // application/json when empty; "-" sends none
	accept      string
	chunked     bool   // send the body without a length
	query       string // the URL's query string (GET)
	body        string // TOKEN is replaced by the caller's token
	status      int
	code        string
	msg         string // the message holds it
	allow       string // the Allow header of a 405
	media       string // the response's media type; application/json when empty
}

// mistakes are the client mistakes of issue 13, and their answers. Every
// body carries the caller's token and bodyMarker; the server's body limit
// is 4096 bytes.
func mistakes() []mistake {
	meQuery := `"query": "query Me($t: String) { me { id } }", "variables": {"t": "TOKEN ` + bodyMarker + `"}`
	big := `{` + meQuery + `, "operationName": "` + strings.Repeat("x", 5000) + `"}`
	return []mistake{
		{name: "truncated JSON", body: `{` + meQuery, status: 400, code: "BAD_REQUEST", msg: "not valid JSON"},
		{name: "JSON syntax error", body: `{` + meQuery + `, oops}`, status: 400, code: "BAD_REQUEST", msg: "not valid JSON (at byte"},
		{name: "batched array", body: `[{` + meQuery + `}, {` + meQuery + `}]`, status: 400, code: "BAD_REQUEST", msg: "batched requests"},
		{name: "two JSON values", body: `{` + meQuery + `} {}`, status: 400, code: "BAD_REQUEST", msg: "more than one JSON value"},
		{name: "query not a string", body: `{"query": 12, "variables": {"t": "TOKEN ` + bodyMarker + `"}}`, status: 400, code: "BAD_REQUEST", msg: "query must be a string"},
		{name: "variables not an object", body: `{"query": "{ me { id } }", "variables": "TOKEN ` + bodyMarker + `"}`, status: 400, code: "BAD_REQUEST", msg: "variables must be an object"},
		{name: "not an object", body: `"TOKEN ` + bodyMarker + `"`, status: 400, code: "BAD_REQUEST", msg: "must be a JSON object"},
		{name: "no query", body: `{"variables": {"t": "TOKEN ` + bodyMarker + `"}}`, status: 400, code: "BAD_REQUEST", msg: "no query"},
		{name: "empty body", body: "", status: 400, code: "BAD_REQUEST", msg: "empty"},
		{name: "text/plain", contentType: "text/plain", body: `{` + meQuery + `}`, status: 415, code: "BAD_REQUEST", msg: "application/json"},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded", body: "query=TOKEN+" + bodyMarker, status: 415, code: "BAD_REQUEST", msg: "application/json"},
		{name: "no content type", contentType: "-", body: `{` + meQuery + `}`, status: 415, code: "BAD_REQUEST", msg: "application/json"},
		{name: "latin-1 charset", contentType: "application/json; charset=iso-8859-1", body: `{` + meQuery + `}`, status: 415, code: "BAD_REQUEST", msg: "UTF-8"},
		{name: "unknown persisted query", body: `{"variables": {"t": "TOKEN ` + bodyMarker + `"}, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "` + strings.Repeat("ab", 32) + `"}}}`,
			status: 404, code: "PERSISTED_QUERY_NOT_FOUND", msg: "PersistedQueryNotFound"},
		{name: "wrong persisted query hash", body: `{` + meQuery + `, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "` + strings.Repeat("ab", 32) + `"}}}`,
			status: 400, code: "BAD_REQUEST", msg: "does not match"},
		{name: "persisted query version 2", body: `{` + meQuery + `, "extensions": {"persistedQuery": {"version": 2, "sha256Hash": "x"}}}`,
			status: 400, code: "BAD_REQUEST", msg: "unsupported persisted query version"},
		{name: "chunked body over the limit", chunked: true, body: big, status: 413, code: "BAD_REQUEST", msg: "larger than 4096 bytes"},
		{name: "declared body over the limit", body: big, status: 413, code: "BAD_REQUEST", msg: "larger than 4096 bytes"},
		{name: "mutation over GET", method: "GET", query: "query=" + url.QueryEscape(`mutation { signIn(name: "TOKEN `+bodyMarker+`") { token } }`),
			status: 405, code: "BAD_REQUEST", msg: "POST", allow: "POST"},
		{name: "GET variables not JSON", method: "GET", query: "query=" + url.QueryEscape(`{ me { id } }`) + "&variables=TOKEN+" + bodyMarker,
			status: 400, code: "BAD_REQUEST", msg: "variables must be a JSON object"},
		{name: "GET malformed query string", method: "GET", query: "query=%zz&t=TOKEN+" + bodyMarker, status: 400, code: "BAD_REQUEST", msg: "malformed"},
		{name: "PUT", method: "PUT", body: `{` + meQuery + `}`, status: 405, code: "BAD_REQUEST", msg: "GET", allow: "GET, POST, OPTIONS"},
		{name: "subscription over POST", body: `{"query": "subscription { statusPosted { id } }", "variables": {"t": "TOKEN ` + bodyMarker + `"}}`,
			status: 400, code: "BAD_REQUEST", msg: "WebSocket"},
		// The document's own errors: 200 under application/json (the
		// GraphQL-over-HTTP spec's advice), 400 under
		// application/graphql-response+json (no data: 4xx).
		{name: "validation error", body: `{"query": "{ nope }", "variables": {"t": "TOKEN ` + bodyMarker + `"}}`, status: 200, code: "GRAPHQL_VALIDATION_FAILED", msg: "nope"},
		{name: "validation error, graphql-response+json", accept: "application/graphql-response+json", body: `{"query": "{ nope }", "variables": {"t": "TOKEN ` + bodyMarker + `"}}`,
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", msg: "nope", media: "application/graphql-response+json"},
		{name: "parse error, graphql-response+json", accept: "application/graphql-response+json;q=1, application/json;q=0.5", body: `{"query": "{", "variables": {"t": "TOKEN ` + bodyMarker + `"}}`,
			status: 400, code: "GRAPHQL_PARSE_FAILED", media: "application/graphql-response+json"},
		{name: "truncated JSON, graphql-response+json", accept: "application/graphql-response+json", body: `{` + meQuery, status: 400, code: "BAD_REQUEST", msg: "not valid JSON",
			media: "application/graphql-response+json"},
	}
}

// TestClientMistakesAreClientErrors sends each malformed request of
// mistakes to the server with the caller's (valid) token in its header
// and body: each gets its 4xx status (or 200 for a document error under
// application/json), one error with its code and a message saying what to
// fix, and no data; none is logged at error or warn level, each is logged
// as "request refused" under its request id with its status and code, and
// no log line (at debug level) and no answer holds the body or the token.
func TestClientMistakesAreClientErrors(t *testing.T) {
	s := startServer(t, map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "LIMIT_HTTP_BODY": "4096"})
	token := s.signIn(t, "Mallory")
	for _, m := range mistakes() {
		t.Run(m.name, func(t *testing.T) {
			resp, raw := sendMistake(t, s, token, m)
			assert.Equal(t, m.status, resp.StatusCode, "%s", raw)
			media, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			assert.Equal(t, cmp.Or(m.media, "application/json"), media)
			if m.allow != "" {
				assert.Equal(t, m.allow, resp.Header.Get("Allow"))
			}
			var r struct {
				Data   json.RawMessage `json:"data"`
				Errors []gqlError      `json:"errors"`
			}
			require.NoError(t, json.Unmarshal(raw, &r), "%s", raw)
			require.Len(t, r.Errors, 1, "%s", raw)
			assert.Equal(t, m.code, r.Errors[0].Code(), "%s", raw)
			assert.Contains(t, r.Errors[0].Message, m.msg)
			assert.Contains(t, []string{"", "null"}, string(r.Data), "no data")
			assert.NotContains(t, string(raw), bodyMarker, "the body is not echoed")
			assert.NotContains(t, string(raw), token, "the token is not echoed")

			id := resp.Header.Get("X-Request-ID")
			require.NotEmpty(t, id)
			want := `"msg":"request refused","client":"127.0.0.1:`
			line := logLineOf(s.logs.String(), id, want)
			require.NotEmpty(t, line, "no refusal logged for request %s", id)
			assert.Contains(t, line, fmt.Sprintf(`"status":%d,"code":%q`, m.status, m.code))
			level := `"level":"INFO"`
			if m.code == "PERSISTED_QUERY_NOT_FOUND" {
				level = `"level":"DEBUG"` // a normal step of the protocol
			}
			assert.Contains(t, line, level)
		})
	}

	t.Run("a persisted query round trip still works", func(t *testing.T) {
		q := `{ me { name } }`
		sum := sha256.Sum256([]byte(q))
		ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
		for _, body := range []map[string]any{{"query": q, "extensions": ext}, {"extensions": ext}} {
			b, _ := json.Marshal(body)
			resp, raw := sendMistake(t, s, token, mistake{body: string(b)})
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
			assert.JSONEq(t, `{"data":{"me":{"name":"Mallory"}}}`, string(raw))
		}
	})

	for line := range strings.SplitSeq(strings.TrimSpace(s.logs.String()), "\n") {
		assert.NotContains(t, line, `"level":"ERROR"`)
		assert.NotContains(t, line, `"level":"WARN"`)
		assert.NotContains(t, line, bodyMarker, "a log line holds the request body")
		assert.NotContains(t, line, token, "a log line holds the token")
	}
}

// sendMistake sends m with token in the Authorization header and in place
// of TOKEN in its body and query, and returns the response and its body.
func sendMistake(t *testing.T, s *testServer, token string, m mistake) (*http.Response, []byte) {
	t.Helper()
	body := strings.ReplaceAll(m.body, "TOKEN", token)
	var reader io.Reader = strings.NewReader(body)
	if m.chunked {
		reader = io.MultiReader(reader) // hides the length: sent chunked
	}
	target := s.URL + "/graphql"
	if m.query != "" {
		target += "?" + strings.ReplaceAll(m.query, "TOKEN", token)
	}
	if m.method == "GET" {
		reader = nil
	}
	req, err := http.NewRequest(cmp.Or(m.method, "POST"), target, reader)
	require.NoError(t, err)
	if m.chunked {
		require.Equal(t, int64(0), req.ContentLength, "the body goes chunked")
	}
	switch m.contentType {
	case "":
		req.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		req.Header.Set("Content-Type", m.contentType)
	}
	if m.accept != "" {
		req.Header.Set("Accept", m.accept)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, bytes.TrimSpace(raw)
}

// logLineOf returns the JSON log line holding want logged under request
// id, or "".
func logLineOf(logs, id, want string) string {
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"request_id":"`+id+`"`) && strings.Contains(line, want) {
			return line
		}
	}
	return ""
}
