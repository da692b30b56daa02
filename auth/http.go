package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler/transport"

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

// CloseForbidden is the WebSocket close code for a refused connection_init
// (graphql-transport-ws: 4403 Forbidden). The standard graphql-ws client
// retries after it, so a client that refreshes its token reconnects.
const CloseForbidden = 4403

// WebsocketInit authenticates a WebSocket connection from the authorization
// entry of its connection_init payload (same "Bearer <token>" form as the
// header). Without one the connection is anonymous. An invalid or expired
// token refuses the connection with close code 4403. The connection_ack
// payload tells the client who it is signed in as.
func (t *Tokens) WebsocketInit(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	token, present, err := FromHeader(payload.Authorization())
	if !present {
		return ctx, &transport.InitPayload{"user": nil}, nil
	}
	var p *models.Principal
	if err == nil {
		p, err = t.Verify(token)
	}
	if err != nil {
		msg := clientReason(err)
		ctx = transport.WithWebsocketCloseCode(ctx, CloseForbidden)
		ctx = transport.AppendCloseReason(ctx, msg)
		return ctx, nil, models.Errorf(models.Unauthenticated, "%s", msg)
	}
	ack := transport.InitPayload{"user": map[string]any{"id": p.User.ID, "name": p.User.Name}}
	return WithPrincipal(ctx, p), &ack, nil
}

// clientReason is the part of a token error a client may see.
func clientReason(err error) string {
	var e *models.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "invalid token"
}
