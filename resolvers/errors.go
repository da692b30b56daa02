package resolvers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/request"
)

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
		id := request.ID(ctx)
		log.ErrorContext(ctx, "internal error", "client", request.ClientAddr(ctx), "path", presented.Path.String(), "err", err)
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
		log.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return fmt.Errorf("panic: %v", p)
	}
}
