package e2e

import (
	"fmt"
	"os"
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

// TestValidationWorkIsBounded: an anonymous 50 KB document that repeats a
// field thousands of times (gqlparser's overlapping-fields check compares
// every two of them: seconds of CPU) is refused before validation, over
// HTTP and both WebSocket protocols, in milliseconds; a large legitimate
// document (GraphiQL's introspection query) still passes; and a document
// with a hundred mistakes gets twenty errors and a note.
func TestValidationWorkIsBounded(t *testing.T) {
	s := startServer(t, nil)
	attack := "{ " + strings.Repeat("__typename ", 4500) + "}"
	start := time.Now()
	r := s.do(t, "", attack, nil)
	elapsed := time.Since(start)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, "GRAPHQL_VALIDATION_FAILED", r.Errors[0].Code())
	assert.Contains(t, r.Errors[0].Message, "repeats fields or fragment spreads too often")
	t.Logf("a %d-byte document repeating one field %d times: refused in %s", len(attack), 4500, elapsed.Round(time.Millisecond))
	for _, protocol := range []string{"graphql-transport-ws", "graphql-ws"} {
		ws := dialWS(t, s, protocol, nil)
		ws.init("")
		ws.subscribe("q", attack, nil)
		m := ws.read(5 * time.Second)
		require.Equal(t, "error", m.Type, "%s: %s", protocol, m.Payload)
		assert.Contains(t, string(m.Payload), "repeats fields or fragment spreads too often", protocol)
	}

	introspection, err := os.ReadFile("../app/testdata/introspection.graphql")
	require.NoError(t, err)
	var d struct {
		Schema struct{ Types []struct{ Name string } } `json:"__schema"`
	}
	s.mustDo(t, "", string(introspection), nil, &d)
	assert.NotEmpty(t, d.Schema.Types)

	var mistakes strings.Builder
	for i := range 100 {
		fmt.Fprintf(&mistakes, "x%d ", i)
	}
	r = s.do(t, "", "{ "+mistakes.String()+"}", nil)
	require.Len(t, r.Errors, 21, "twenty errors and a note")
	assert.Equal(t, "more than 20 errors; the others are not reported", r.Errors[20].Message)
}

// TestComplexityCountsListSizes: thirty aliased pages of a hundred statuses
// with their authors (3,000 statuses, some 24,000 resolver calls) passed
// the complexity limit when every field counted one; now a page costs its
// size times its items, and the document is refused over HTTP and
// WebSocket, while the largest page of a list with every field still
// passes.
func TestComplexityCountsListSizes(t *testing.T) {
	s := startServer(t, nil)
	var pages strings.Builder
	for i := range 30 {
		fmt.Fprintf(&pages, "p%d: statuses(first: 100) { edges { node { id text createdAt author { id name } } } } ", i)
	}
	fanOut := "{ " + pages.String() + "}"
	r := s.do(t, "", fanOut, nil)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", r.Errors[0].Code())
	assert.Contains(t, r.Errors[0].Message, "operation has complexity 24000, which exceeds the limit of 5000")
	ws := s.chatWS(t, "")
	ws.subscribe("q", fanOut, nil)
	assert.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", ws.operationError("q").Code())

	token := s.signIn(t, "reader")
	s.mustDo(t, token, `{ notifications(first: 100) { edges { cursor node { id title body level link broadcast read createdAt } } pageInfo { hasNextPage endCursor } } }`, nil, nil)
	s.mustDo(t, "", `{ statuses(first: 100) { edges { cursor node { id text createdAt author { id name } } } pageInfo { hasNextPage endCursor } } }`, nil, nil)
}
