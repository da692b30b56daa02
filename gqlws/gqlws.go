// Package gqlws is Switchboard's WebSocket layer under gqlgen's GraphQL
// transport: it accepts connections with github.com/gorilla/websocket and
// adapts them to transport.WebsocketImplementation. It is where the origin
// check, buffer sizes, the read limit and the write deadline live, and it
// tracks open connections so that shutdown can close each of them with a
// proper close code.
package gqlws

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// Subprotocols are the WebSocket subprotocols served, most preferred first:
// graphql-transport-ws (the graphql-ws library's protocol) and graphql-ws
// (the legacy subscriptions-transport-ws protocol). A client offering none
// gets the legacy protocol, as gqlgen does.
var Subprotocols = []string{"graphql-transport-ws", "graphql-ws"}

// CloseGoingAway is the close code sent to every connection when the server
// shuts down (RFC 6455 1001); the standard graphql-ws client reconnects after
// it.
const CloseGoingAway = websocket.CloseGoingAway

// Options configure an Acceptor. Zero values take the defaults.
type Options struct {
	// CheckOrigin decides whether a browser's Origin may open a connection.
	// Nil allows only the server's own origin (and clients sending none).
	CheckOrigin func(r *http.Request) bool
	// WriteTimeout bounds one write to a client; a client that does not read
	// for that long is disconnected. Default 10s.
	WriteTimeout time.Duration
	// ReadBufferSize and WriteBufferSize are the I/O buffer sizes. Default 1 KiB each.
	ReadBufferSize, WriteBufferSize int
}

// Acceptor upgrades HTTP requests to WebSocket connections for gqlgen's
// transport.Websocket and keeps track of them.
type Acceptor struct {
	upgrader     websocket.Upgrader
	checkOrigin  func(r *http.Request) bool
	writeTimeout time.Duration

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	shutdown bool
}

var _ transport.WebsocketImplementation = (*Acceptor)(nil)

// New returns an Acceptor configured by opts.
func New(opts Options) *Acceptor {
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 1024
	}
	if opts.CheckOrigin == nil {
		opts.CheckOrigin = sameOrigin
	}
	if opts.WriteBufferSize <= 0 {
		opts.WriteBufferSize = 1024
	}
	return &Acceptor{
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   opts.ReadBufferSize,
			WriteBufferSize:  opts.WriteBufferSize,
			WriteBufferPool:  &sync.Pool{},
			Subprotocols:     Subprotocols,
			// Guard checks the origin before gqlgen's transport runs.
			CheckOrigin: func(*http.Request) bool { return true },
			// gqlgen's transport answers a failed upgrade itself.
			Error: func(http.ResponseWriter, *http.Request, int, error) {},
		},
		checkOrigin:  opts.CheckOrigin,
		writeTimeout: opts.WriteTimeout,
		conns:        make(map[*Conn]struct{}),
	}
}

// Guard refuses, with 403 Forbidden, WebSocket upgrades whose Origin the
// options do not allow (cross-site WebSocket hijacking), before next (the
// GraphQL handler) sees them. Other requests pass through.
func (a *Acceptor) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" && !a.checkOrigin(r) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin allows requests without an Origin header and those whose Origin
// names the requested host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// ErrShuttingDown refuses upgrades once Shutdown has begun.
var ErrShuttingDown = errors.New("gqlws: server shutting down")

// Accept upgrades the request. The subprotocols gqlgen offers are served in
// the order of Subprotocols.
func (a *Acceptor) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	a.mu.Lock()
	down := a.shutdown
	a.mu.Unlock()
	if down {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return nil, ErrShuttingDown
	}
	ws, err := a.upgrader.Upgrade(w, r, opts.ResponseHeader)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	c := &Conn{ws: ws, a: a, writeTimeout: a.writeTimeout}
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		_ = c.WriteClose(CloseGoingAway, "server shutting down")
		_ = ws.Close()
		return nil, ErrShuttingDown
	}
	a.conns[c] = struct{}{}
	a.mu.Unlock()
	return c, nil
}

// Len reports how many connections are open.
func (a *Acceptor) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// Shutdown refuses new connections and closes every open one with code and
// reason.
func (a *Acceptor) Shutdown(code int, reason string) {
	a.mu.Lock()
	a.shutdown = true
	conns := make([]*Conn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	a.mu.Unlock()
	for _, c := range conns {
		_ = c.WriteClose(code, reason)
		_ = c.Close()
	}
}

// Conn is one accepted connection, as gqlgen's transport uses it.
type Conn struct {
	ws           *websocket.Conn
	a            *Acceptor
	writeTimeout time.Duration

	wmu       sync.Mutex // serialises data frames
	closeOnce sync.Once
}

var (
	_ transport.WebsocketConn          = (*Conn)(nil)
	_ transport.WebsocketReadLimiter   = (*Conn)(nil)
	_ transport.WebsocketReadDeadliner = (*Conn)(nil)
)

// NextReader returns the next message, or transport.ErrWebsocketClosed when
// the peer closed normally.
func (c *Conn) NextReader() (int, io.Reader, error) {
	t, r, err := c.ws.NextReader()
	if err != nil {
		if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseNoStatusReceived, websocket.CloseGoingAway) {
			return t, nil, transport.ErrWebsocketClosed
		}
		return t, nil, err
	}
	return t, r, nil
}

// WriteJSON sends v as one text frame, giving up after the write timeout.
func (c *Conn) WriteJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.ws.WriteJSON(v)
}

// WriteClose sends a close frame with code and message (cut to the 123 bytes
// a close frame allows).
func (c *Conn) WriteClose(code int, message string) error {
	if len(message) > 123 {
		message = message[:123]
	}
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, message),
		time.Now().Add(time.Second))
}

// Close closes the connection without a close frame and forgets it.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.ws.Close()
		c.a.mu.Lock()
		delete(c.a.conns, c)
		c.a.mu.Unlock()
	})
	return err
}

// Subprotocol returns the negotiated subprotocol, "" when none.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// SetReadLimit bounds the size of one client message.
func (c *Conn) SetReadLimit(limit int64) { c.ws.SetReadLimit(limit) }

// SetReadDeadline bounds the wait for the next client message.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }
