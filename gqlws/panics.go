package gqlws

import (
	"context"
	"encoding/json"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/request"
)

// Panics. Every goroutine of the transport recovers a panic through
// Options.Panics, which logs it once (with its stack and the connection's
// request id) and counts it under one of the names below; the panic ends
// only what it broke:
//
//   - a connection's reader (whereConnection), the handling of one client
//     message (whereMessage) or connection_init (whereInit), and its
//     flusher (whereWriter): the connection, closed with 4500;
//   - an operation's preparation and private run (whereOperation): that
//     operation, which gets an INTERNAL error, the connection carries on;
//   - a group's leader (whereGroup): the shared subscription, whose every
//     member gets an INTERNAL error (its client subscribes again with
//     after and loses nothing);
//   - the keepalive (whereKeepalive): its round, the next tick runs;
//   - a deferred close (whereClose): that close (the socket is closed
//     under it, so its reader ends).
//
// The same names are the injection points tests use (panics.Guard.Point).
const (
	whereConnection = "ws.connection"
	whereMessage    = "ws.message"
	whereInit       = "ws.init"
	whereOperation  = "ws.operation"
	whereGroup      = "ws.group"
	whereWriter     = "ws.writer"
	whereKeepalive  = "ws.keepalive"
	whereClose      = "ws.close"
)

// reasonInternal is the reason of the 4500 closes.
const reasonInternal = "Internal server error"

// logContext is the connection's context (its request id), for the log;
// Background before setup.
func (c *conn) logContext() context.Context {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.base == nil {
		return context.Background()
	}
	return c.base
}

// closeLater closes the connection on a goroutine of its own, for callers
// that hold a lock close needs.
func (c *conn) closeLater(code int, reason string) { go c.closeGuarded(code, reason) }

// closeGuarded closes the connection as the injection point whereClose. A
// panic there closes the socket under it at least: its reader then ends.
func (c *conn) closeGuarded(code int, reason string) {
	defer c.transport.opts.Panics.Recover(c.logContext(), whereClose, func() { _ = c.socket.Conn.Close() })
	c.transport.opts.Panics.Point(whereClose)
	c.close(code, reason)
}

// guarded runs handle, which handles one client message and returns the
// connection's context (nil when it ends), as the injection point where: a
// panic closes the connection with 4500 and ends it.
func (c *conn) guarded(ctx context.Context, where string, handle func() context.Context) (next context.Context) {
	if c.transport.opts.Panics.Do(ctx, where, func() { next = handle() }) {
		c.close(CloseInternalError, reasonInternal)
		return nil
	}
	return next
}

// internalError is the error an operation ends with when a panic ended it,
// as the error presenter shows internal errors: with the request id the
// log line has.
func internalError(ctx context.Context) *gqlerror.Error {
	ext := map[string]any{"code": "INTERNAL"}
	if id := request.ID(ctx); id != "" {
		ext["requestId"] = id
	}
	return &gqlerror.Error{Message: "internal error", Extensions: ext}
}

// internalErrorFrame is operation id's error message for a panic.
func (c *conn) internalErrorFrame(id string) []byte {
	payload, _ := json.Marshal(gqlerror.List{internalError(c.logContext())}) // always encodes
	return operationFrame("error", id, payload)
}
