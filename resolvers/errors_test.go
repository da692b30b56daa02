package resolvers_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/graph"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/resolvers"
)

// TestPanicEndsOnlyItsOperation: a resolver that panics (here: a missing
// dependency dereferenced) yields an INTERNAL error with a request id at its
// field; the client sees no internals, the log has the panic and its stack
// under the same id, and the next operation is served as usual.
func TestPanicEndsOnlyItsOperation(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(request.LogHandler(slog.NewTextHandler(&logs, nil)))
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}})) // no services
	srv.AddTransport(transport.POST{})
	srv.SetErrorPresenter(resolvers.ErrorPresenter(log))
	srv.SetRecoverFunc(resolvers.Recover(log))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(w, r.WithContext(request.WithID(r.Context(), "req-42")))
	})

	body := `{"query":"{ me { id } statuses(first: 1) { edges { cursor } } }"}`
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)

	var resp struct {
		Data   map[string]json.RawMessage
		Errors []struct {
			Message    string
			Path       []any
			Extensions map[string]any
		}
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp), rec.Body.String())
	require.Len(t, resp.Errors, 1, rec.Body.String())
	e := resp.Errors[0]
	assert.Equal(t, "internal error", e.Message)
	assert.Equal(t, []any{"statuses"}, e.Path)
	assert.Equal(t, "INTERNAL", e.Extensions["code"])
	assert.Equal(t, "req-42", e.Extensions["requestId"])
	assert.NotContains(t, rec.Body.String(), "nil pointer", "no internals reach the client")
	assert.NotContains(t, rec.Body.String(), ".go:", "no stack reaches the client")

	assert.Contains(t, logs.String(), "panic in resolver")
	assert.Contains(t, logs.String(), "request_id=req-42")
	assert.Contains(t, logs.String(), "nil pointer")
	assert.Contains(t, logs.String(), "goroutine", "the stack is logged")

	// Only that operation ended: the next one is served as usual.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ me { id } }"}`))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	assert.JSONEq(t, `{"data":{"me":null}}`, rec.Body.String())
}
