package resolvers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/request"
)

// ErrorPresenter turns resolver errors into GraphQL errors. An error whose
// chain carries a code (models.CodedError) other than INTERNAL shows that
// error's Message and code, and nothing of its operation or cause; it is not
// logged (an UNAVAILABLE database is reported by /readyz and counted in the
// metrics, not logged once per request), except RATE_LIMITED, logged at
// info as "rate limit hit" with the client and the field. gqlgen's own
// errors (parse, validation, complexity) and the transport's (BAD_REQUEST,
// PERSISTED_QUERY_NOT_FOUND: every *gqlerror.Error with a code and no
// cause) keep theirs; the transport logs those. An operation whose caller
// went away (CallerGone) is logged at debug level only. Anything else, an INTERNAL
// *models.Error included, is internal: the client sees "internal error",
// extensions.code INTERNAL and the request id, and the full error (its
// operation and cause) is logged at error level under that id. So every
// error a client can cause at will must carry a code.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		presented := graphql.DefaultErrorPresenter(ctx, err)
		if CallerGone(ctx, err) {
			log.DebugContext(ctx, "request canceled by the client", "client", request.ClientAddr(ctx), "path", presented.Path.String())
			return &gqlerror.Error{
				Message:    "request canceled",
				Path:       presented.Path,
				Locations:  presented.Locations,
				Extensions: map[string]any{"code": string(models.Unavailable)},
			}
		}
		if coded, ok := models.CodedError(err); ok && coded.Code != models.Internal {
			presented.Message = coded.Message
			presented.Extensions = map[string]any{"code": string(coded.Code)}
			if coded.Code == models.RateLimited {
				log.InfoContext(ctx, "rate limit hit", "client", request.ClientAddr(ctx), "path", presented.Path.String())
			}
			return presented
		}
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && gqlErr.Err == nil {
			if _, ok := gqlErr.Extensions["code"]; ok {
				return presented // gqlgen's own (parse, validation, complexity) or the transport's
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

// CallerGone reports whether err ended an operation because its caller went
// away (closed the connection mid-request, or completed the subscription):
// ctx, the operation's, is canceled and err is that cancellation. Nobody
// reads the answer, and nothing went wrong in the server, so it is neither
// an internal error nor counted as an error answered.
func CallerGone(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// Recover turns a panic in a resolver into an internal error for that
// operation alone, reported by guard (logged with its stack and counted,
// where="resolver").
func Recover(guard *panics.Guard) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		guard.Report(ctx, "resolver", p)
		return fmt.Errorf("panic: %v", p)
	}
}
