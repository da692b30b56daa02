package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/switchboardhq/switchboard/models"
)

// Middleware authenticates HTTP requests that carry an Authorization header
// and puts the caller in the request context. A request without one passes
// as anonymous. A request with an invalid or expired token is answered at
// once with 401 and a GraphQL error whose extensions.code is
// UNAUTHENTICATED, so the client knows to drop its token rather than
// silently acting as nobody; so is a token whose session ended (signed out
// or revoked). A session that cannot be checked now (the database is down)
// is answered with 503 and UNAVAILABLE. WebSocket upgrades (Upgrade:
// websocket, and nothing else) pass through untouched: their token arrives
// in connection_init.
func (t *Tokens) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		token, present, err := FromHeader(r.Header.Get("Authorization"))
		if !present {
			next.ServeHTTP(w, r)
			return
		}
		var p *models.Principal
		if err == nil {
			p, err = t.Authenticate(r.Context(), token)
		}
		if err != nil {
			writeRefusal(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// writeRefusal answers a request whose token was refused: 401 and
// UNAUTHENTICATED, or 503 and UNAVAILABLE when its session could not be
// checked.
func writeRefusal(w http.ResponseWriter, err error) {
	e, status := refusal(err), http.StatusUnauthorized
	if e.Code == models.Unavailable {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{
			"message":    e.Message,
			"extensions": map[string]any{"code": e.Code},
		}},
	}) // no data entry: nothing ran (as the server's other refusals)
}

// ConnectionInit authenticates a WebSocket connection from the
// authorization entry of its connection_init payload (the same
// "Bearer <token>" form as the header). Without one the connection is
// anonymous and p is nil. An invalid or expired token, or one whose session
// ended, is a models.Unauthenticated error with a short reason (a session
// that cannot be checked now, models.Unavailable); the WebSocket layer
// refuses the connection with 4403 (1013 for models.Unavailable).
func (t *Tokens) ConnectionInit(ctx context.Context, payload map[string]any) (_ context.Context, p *models.Principal, _ error) {
	value, _ := payload["authorization"].(string)
	if value == "" {
		value, _ = payload["Authorization"].(string)
	}
	token, present, err := FromHeader(value)
	if !present {
		return ctx, nil, nil
	}
	if err == nil {
		p, err = t.Authenticate(ctx, token)
	}
	if err != nil {
		return ctx, nil, refusal(err)
	}
	return WithPrincipal(ctx, p), p, nil
}

// refusal returns err, why a token was refused, as the client sees it:
// models.Unauthenticated with its reason, or models.Unavailable when the
// token's session could not be checked (any failure without one of those
// two codes counts as that).
func refusal(err error) *models.Error {
	if e, ok := models.CodedError(err); ok && (e.Code == models.Unauthenticated || e.Code == models.Unavailable) {
		return &models.Error{Code: e.Code, Message: e.Message}
	}
	return &models.Error{Code: models.Unavailable, Message: "the session cannot be checked now, try again later"}
}
