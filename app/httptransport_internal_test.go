package app

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// TestResponseMediaType: the client's preferred of the two GraphQL media
// types, by q value then order; application/json for anything else.
func TestResponseMediaType(t *testing.T) {
	for accept, want := range map[string]string{
		"":                                  mediaJSON,
		"*/*":                               mediaJSON,
		"text/html":                         mediaJSON,
		"application/graphql-response+json": mediaGraphQLResponse,
		"application/json, application/graphql-response+json":                   mediaJSON,
		"application/graphql-response+json,application/json;q=0.9":              mediaGraphQLResponse, // Apollo Client 4
		"application/json;q=0.5, application/graphql-response+json;q=0.8":       mediaGraphQLResponse,
		"application/graphql-response+json;q=0, application/json":               mediaJSON,
		"multipart/mixed;deferSpec=20220824, application/graphql-response+json": mediaGraphQLResponse,
		"application/graphql-response+json;q=oops":                              mediaGraphQLResponse,
	} {
		assert.Equal(t, want, responseMediaType(accept), "Accept: %s", accept)
	}
}

// TestDecodeParamsRefusals: each malformed body is refused with 400,
// BAD_REQUEST and a message saying what is wrong, without quoting it.
func TestDecodeParamsRefusals(t *testing.T) {
	for body, msg := range map[string]string{
		``:                                       "the request body is empty",
		" \n ":                                   "the request body is empty",
		`[{"query": "{ me { id } }"}]`:           "batched requests",
		`{"query": "{ me { id } }"`:              "not valid JSON (it ends too early)",
		`{"query": secret}`:                      "not valid JSON (at byte 11)",
		`{"query": ["secret"]}`:                  "query must be a string",
		`{"query": "{ a }", "operationName": 1}`: "operationName must be a string",
		`{"query": "{ a }", "variables": [1]}`:   "variables must be an object",
		`{"query": "{ a }", "extensions": "x"}`:  "extensions must be an object",
		`"secret"`:                               "must be a JSON object",
		`{"query": "{ a }"} secret`:              "more than one JSON value",
	} {
		p, refused := decodeParams([]byte(body))
		require.Nil(t, p, body)
		require.NotNil(t, refused, body)
		assert.Equal(t, http.StatusBadRequest, refused.status, body)
		require.Len(t, refused.errs, 1)
		assert.Contains(t, refused.errs[0].Message, msg, body)
		assert.NotContains(t, refused.errs[0].Message, "secret", body)
		assert.Equal(t, "BAD_REQUEST", refused.errs[0].Extensions["code"], body)
	}
	p, refused := decodeParams([]byte(` {"query": "{ a }", "variables": {"n": 12345678901234567890}} `))
	require.Nil(t, refused)
	assert.Equal(t, "{ a }", p.Query)
	assert.Equal(t, "12345678901234567890", p.Variables["n"].(interface{ String() string }).String(), "numbers keep their digits")
}

// TestDocumentErrorStatus: the transport's codes have their own status;
// the document's errors are 200 under application/json and 400 under
// application/graphql-response+json.
func TestDocumentErrorStatus(t *testing.T) {
	withCode := func(code string) gqlerror.List {
		return gqlerror.List{{Message: "x", Extensions: map[string]any{"code": code}}}
	}
	assert.Equal(t, 400, documentErrorStatus(withCode("BAD_REQUEST"), mediaJSON))
	assert.Equal(t, 404, documentErrorStatus(withCode("PERSISTED_QUERY_NOT_FOUND"), mediaGraphQLResponse))
	assert.Equal(t, 200, documentErrorStatus(withCode("GRAPHQL_VALIDATION_FAILED"), mediaJSON))
	assert.Equal(t, 400, documentErrorStatus(withCode("GRAPHQL_VALIDATION_FAILED"), mediaGraphQLResponse))
	assert.Equal(t, 400, documentErrorStatus(withCode("COMPLEXITY_LIMIT_EXCEEDED"), mediaGraphQLResponse))
}
