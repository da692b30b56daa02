package resolvers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/models"
)

type ctxKey struct{ name string }

var requestIDKey = &ctxKey{"request-id"}

// WithRequestID returns ctx carrying the id under which a request is logged.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

var clientAddrKey = &ctxKey{"client-addr"}

// WithClientAddr returns ctx carrying the client's address (for logs).
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddrKey, addr)
}

// ClientAddr returns the client's address in ctx, "" when unknown.
func ClientAddr(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey).(string)
	return a
}

// RequestID returns the request id of ctx, or "" when it has none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// LogHandler wraps h so that a record logged with a context carrying a
// request id (see WithRequestID) has it under request_id, unless the record
// names one itself. Lines logged while serving a request or a WebSocket
// connection carry its id even from packages that cannot know the key.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		named := false
		r.Attrs(func(a slog.Attr) bool {
			named = a.Key == "request_id"
			return !named
		})
		if !named {
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// NewRequestID returns a random request id.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrorPresenter turns resolver errors into GraphQL errors. A *models.Error
// shows its message and code; gqlgen's own errors (parse, validation,
// complexity) keep theirs. Anything else is internal: the client sees
// "internal error", extensions.code INTERNAL and the request id, and the
// full error is logged under that id.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		presented := graphql.DefaultErrorPresenter(ctx, err)
		var domain *models.Error
		if errors.As(err, &domain) {
			presented.Message = domain.Message
			presented.Extensions = map[string]any{"code": string(domain.Code)}
			return presented
		}
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && gqlErr.Err == nil {
			if _, ok := gqlErr.Extensions["code"]; ok {
				return presented // gqlgen's own: parse, validation, complexity
			}
		}
		id := RequestID(ctx)
		log.ErrorContext(ctx, "internal error", "request_id", id, "client", ClientAddr(ctx), "path", presented.Path.String(), "err", err)
		return &gqlerror.Error{
			Message:    "internal error",
			Path:       presented.Path,
			Locations:  presented.Locations,
			Extensions: map[string]any{"code": string(models.Internal), "requestId": id},
		}
	}
}

// Recover turns a panic in a resolver into an internal error for that
// operation alone, logging the panic and its stack.
func Recover(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in resolver", "request_id", RequestID(ctx), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return fmt.Errorf("panic: %v", p)
	}
}
