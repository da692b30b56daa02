package auth

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/switchboardhq/switchboard/models"
)

// Middleware authenticates HTTP requests that carry an Authorization header
// and puts the caller in the request context. A request without one passes
// as anonymous. A request with an invalid or expired token is answered at
// once with 401 and a GraphQL error whose extensions.code is
// UNAUTHENTICATED, so the client knows to drop its token rather than
// silently acting as nobody. WebSocket upgrades pass through untouched:
// their token arrives in connection_init.
func (t *Tokens) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
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
			p, err = t.Verify(token)
		}
		if err != nil {
			writeUnauthenticated(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func writeUnauthenticated(w http.ResponseWriter, err error) {
	msg := clientReason(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{
			"message":    msg,
			"extensions": map[string]any{"code": models.Unauthenticated},
		}},
		"data": nil,
	})
}

// ConnectionInit authenticates a WebSocket connection from the
// authorization entry of its connection_init payload (the same
// "Bearer <token>" form as the header). Without one the connection is
// anonymous and p is nil. An invalid or expired token is a
// models.Unauthenticated error with a short reason; the WebSocket layer
// refuses the connection with 4403.
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
		p, err = t.Verify(token)
	}
	if err != nil {
		return ctx, nil, models.Errorf(models.Unauthenticated, "%s", clientReason(err))
	}
	return WithPrincipal(ctx, p), p, nil
}

// clientReason is the part of a token error a client may see.
func clientReason(err error) string {
	if e, ok := models.CodedError(err); ok {
		return e.Message
	}
	return "invalid token"
}
