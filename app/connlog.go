package app

import (
	"context"
	"log/slog"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/request"
)

// wsLog logs what happens to WebSocket connections for an operator: each
// line carries the request id of the upgrade (through the context) and the
// client's address, and never anything the client sent.
type wsLog struct{ log *slog.Logger }

// opened logs a new connection at debug.
func (l wsLog) opened(ctx context.Context, subprotocol string) {
	l.log.DebugContext(ctx, "websocket opened", "client", request.ClientAddr(ctx), "subprotocol", subprotocol)
}

// closed logs the end of a connection with its close code: at info when
// the server ended it for a reason of the client's (any code but 1000 and
// 1001: a protocol violation, a refused or expired token, a client too
// slow to read), at debug otherwise.
func (l wsLog) closed(ctx context.Context, code int, byClient bool) {
	level, by := slog.LevelDebug, "client"
	if !byClient {
		by = "server"
		if code != gqlws.CloseNormal && code != gqlws.CloseGoingAway {
			level = slog.LevelInfo
		}
	}
	l.log.Log(ctx, level, "websocket closed", "client", request.ClientAddr(ctx), "code", code, "by", by)
}

// refused logs, at info, an operation or connection a limit refused.
func (l wsLog) refused(ctx context.Context, limit string) {
	l.log.InfoContext(ctx, "rate limit hit", "client", request.ClientAddr(ctx), "limit", limit)
}

// authRefused logs, at info, a connection_init whose token was refused,
// with the reason the client was given (never the token).
func (l wsLog) authRefused(ctx context.Context, err error) {
	reason := "invalid token"
	if coded, ok := models.CodedError(err); ok {
		reason = coded.Message
	}
	l.log.InfoContext(ctx, "authentication refused", "client", request.ClientAddr(ctx), "reason", reason)
}
