package resolvers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/graph"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
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
	srv.SetRecoverFunc(resolvers.Recover(&panics.Guard{Log: log}))
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

	assert.Contains(t, logs.String(), `msg="panic recovered" where=resolver`)
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

// errRefused stands for a driver's error, with internals a client must not
// see.
var errRefused = errors.New("dial tcp 10.0.0.7:3306: connect: connection refused")

// present runs the presenter on err as a resolver at path "room" returns it,
// under request id req-7, and returns the client's JSON and the log.
func present(t *testing.T, err error) (client map[string]any, logs string) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(request.LogHandler(slog.NewTextHandler(&buf, nil)))
	ctx := request.WithID(t.Context(), "req-7")
	presented := resolvers.ErrorPresenter(log)(ctx, gqlerror.WrapPath(ast.Path{ast.PathName("room")}, err))
	raw, jerr := json.Marshal(presented)
	require.NoError(t, jerr)
	require.NoError(t, json.Unmarshal(raw, &client))
	return client, buf.String()
}

func TestCodedErrorsShowOnlyTheirMessage(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		message string
		code    string
	}{
		{
			name:    "refusal",
			err:     models.Errorf(models.BadUserInput, "first must be between 1 and 100"),
			message: "first must be between 1 and 100", code: "BAD_USER_INPUT",
		},
		{
			name:    "with an op and a cause",
			err:     models.E("find room", models.NotFound, errRefused, "room %d not found", 5),
			message: "room 5 not found", code: "NOT_FOUND",
		},
		{
			name:    "wrapped further",
			err:     fmt.Errorf("resolve room: %w", models.E("find room", "", models.E("find room 5", models.Unavailable, errRefused, "the database is unavailable, try again later"), "")),
			message: "the database is unavailable, try again later", code: "UNAVAILABLE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, logs := present(t, tt.err)
			assert.Equal(t, map[string]any{
				"message":    tt.message,
				"path":       []any{"room"},
				"extensions": map[string]any{"code": tt.code},
			}, client)
			assert.Empty(t, logs, "a coded error is the client's business, not logged")
		})
	}
}

func TestInternalErrorsShowNothingAndLogEverything(t *testing.T) {
	tests := []struct {
		name string
		err  error
		logs []string // the log line holds each
	}{
		{name: "plain", err: errRefused, logs: []string{errRefused.Error()}},
		{
			name: "op without a code",
			err:  models.E("list rooms", "", errRefused, ""),
			logs: []string{"list rooms", errRefused.Error()},
		},
		{
			name: "internal code",
			err:  models.E("migrate", models.Internal, errRefused, "schema version 7 unknown"),
			logs: []string{"migrate", "schema version 7 unknown", errRefused.Error()},
		},
		{
			name: "internal over a coded cause",
			err:  models.E("load settings", models.Internal, models.E("find setting", models.NotFound, errRefused, "setting not found"), ""),
			logs: []string{"load settings", "find setting", "setting not found", errRefused.Error()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, logs := present(t, tt.err)
			assert.Equal(t, map[string]any{
				"message":    "internal error",
				"path":       []any{"room"},
				"extensions": map[string]any{"code": "INTERNAL", "requestId": "req-7"},
			}, client, "nothing of the op or the cause reaches the client")
			assert.Contains(t, logs, "internal error")
			assert.Contains(t, logs, "request_id=req-7")
			for _, want := range tt.logs {
				assert.Contains(t, logs, want)
			}
		})
	}
}

// TestCallerGoneIsNoInternalError: an operation that ends because its
// caller went away (the request's context canceled, the error that
// cancellation, however wrapped) is not an internal error: nothing is
// logged above debug level. A cancellation while the caller is still there
// is one.
func TestCallerGoneIsNoInternalError(t *testing.T) {
	for _, err := range []error{
		context.Canceled,
		fmt.Errorf("create message: %w", context.Canceled),
		models.E("create message", models.Unavailable, context.Canceled, "database unavailable"),
	} {
		t.Run(err.Error(), func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(request.LogHandler(slog.NewTextHandler(&buf, nil)))
			ctx, cancel := context.WithCancel(request.WithID(t.Context(), "req-7"))
			cancel()
			presented := resolvers.ErrorPresenter(log)(ctx, gqlerror.WrapPath(ast.Path{ast.PathName("postMessage")}, err))
			assert.Equal(t, "request canceled", presented.Message)
			assert.Equal(t, "UNAVAILABLE", presented.Extensions["code"])
			assert.Empty(t, buf.String(), "logged above debug level")
			assert.True(t, resolvers.CallerGone(ctx, err))
		})
	}
	client, logs := present(t, fmt.Errorf("create message: %w", context.Canceled))
	assert.Equal(t, "INTERNAL", client["extensions"].(map[string]any)["code"], "the caller is still there")
	assert.Contains(t, logs, "internal error")
}

// TestRateLimitsAreLoggedAtInfo: a RATE_LIMITED refusal reaches the client
// as any coded error does, and the operator sees one info line saying so,
// with the request id and the field, and nothing of the message.
func TestRateLimitsAreLoggedAtInfo(t *testing.T) {
	client, logs := present(t, models.Errorf(models.RateLimited, "too many statuses; slow down"))
	assert.Equal(t, "RATE_LIMITED", client["extensions"].(map[string]any)["code"])
	assert.Contains(t, logs, "level=INFO")
	assert.Contains(t, logs, `msg="rate limit hit"`)
	assert.Contains(t, logs, "request_id=req-7")
	assert.Contains(t, logs, "path=room")
	assert.NotContains(t, logs, "slow down")
}

// TestTransportErrorsKeepTheirCode: an error the transport raised before
// execution (a *gqlerror.Error with a code and no cause, such as
// BAD_REQUEST) is shown as it is and not logged here: the transport logs
// its refusals.
func TestTransportErrorsKeepTheirCode(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(request.LogHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	err := &gqlerror.Error{Message: "provided APQ hash does not match query", Extensions: map[string]any{"code": "BAD_REQUEST"}}
	presented := resolvers.ErrorPresenter(log)(t.Context(), err)
	assert.Equal(t, "provided APQ hash does not match query", presented.Message)
	assert.Equal(t, "BAD_REQUEST", presented.Extensions["code"])
	assert.Empty(t, buf.String())
}
