package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMaliciousDocumentsAreRefused: deep, wide, aliased and huge documents
// are refused before execution with a clear code, over HTTP and WebSocket,
// and the server keeps serving.
func TestMaliciousDocumentsAreRefused(t *testing.T) {
	s := startServer(t, nil)
	nested := func(depth int) string {
		// rooms { lastMessage { author { … } } } cannot nest, so use
		// introspection, whose types nest without end.
		q := "name"
		for range depth {
			q = "ofType { " + q + " }"
		}
		return `{ __type(name: "Room") { ` + q + ` } }`
	}
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{ ")
		for i := range n {
			fmt.Fprintf(&b, "a%d: me { id } ", i)
		}
		return b.String() + "}"
	}
	cases := []struct {
		name, query, code, message string
	}{
		{"too deep", nested(20), "GRAPHQL_VALIDATION_FAILED", "nests 22 fields deep; the limit is 15"},
		{"too many aliases", aliases(31), "GRAPHQL_VALIDATION_FAILED", "more than 30 aliases"},
		{"too many tokens", "{ " + strings.Repeat("me { id } ", 5000) + "}", "GRAPHQL_PARSE_FAILED", "token limit"},
		{"a fragment cycle", `{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`, "GRAPHQL_VALIDATION_FAILED", "Cannot spread fragment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := s.do(t, "", c.query, nil)
			require.NotEmpty(t, r.Errors)
			assert.Equal(t, c.code, r.Errors[0].Code())
			assert.Contains(t, r.Errors[0].Message, c.message)
			assert.Less(t, time.Since(start), 2*time.Second, "refused quickly")

			ws := s.chatWS(t, "")
			ws.subscribe("q", c.query, nil)
			m := ws.read(5 * time.Second)
			assert.Equal(t, "error", m.Type, "over WebSocket too: %s", m.Payload)
		})
	}
	// Within the limits, all is well: GraphiQL's introspection query nests 13 deep.
	r := s.do(t, "", nested(12), nil)
	assert.Empty(t, r.Errors)
	r = s.do(t, "", aliases(30), nil)
	assert.Empty(t, r.Errors)
}

// TestDocumentLimitsAreConfigurable: LIMIT_QUERY_* move each bound (that
// none can be switched off is app's TestConfigValidation).
func TestDocumentLimitsAreConfigurable(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_QUERY_DEPTH": "3", "LIMIT_QUERY_ALIASES": "2", "LIMIT_QUERY_COMPLEXITY": "10", "LIMIT_QUERY_TOKENS": "200"})
	refused := func(query, code, message string) {
		t.Helper()
		r := s.do(t, "", query, nil)
		require.NotEmpty(t, r.Errors, query)
		assert.Equal(t, code, r.Errors[0].Code())
		assert.Contains(t, r.Errors[0].Message, message)
	}
	refused(`{ room(id: "1") { lastMessage { author { name } } } }`, "GRAPHQL_VALIDATION_FAILED", "nests 4 fields deep; the limit is 3")
	refused(`{ a: me { id } b: me { id } c: me { id } }`, "GRAPHQL_VALIDATION_FAILED", "more than 2 aliases")
	refused(`{ room(id: "1") { id name unreadCount } me { id name } online(roomId: "1") { id name } statuses { pageInfo { hasNextPage } } }`, "COMPLEXITY_LIMIT_EXCEEDED", "complexity")
	refused("{ "+strings.Repeat("me { id } ", 100)+"}", "GRAPHQL_PARSE_FAILED", "token limit")
	r := s.do(t, "", `{ a: me { id } b: me { id } room(id: "1") { name } }`, nil)
	assert.Empty(t, r.Errors, "within every limit")

}
