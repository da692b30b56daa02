// Package request carries what Switchboard knows of the HTTP request or
// WebSocket connection it is serving: an id, under which every log line of
// it is written and which an internal error shows the client, and the
// client's address, resolved behind trusted proxies. Its middleware sets
// both; LogHandler puts the id on every line logged with such a context,
// from any package.
package request

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
)

type ctxKey struct{ name string }

var (
	idKey         = &ctxKey{"request-id"}
	clientAddrKey = &ctxKey{"client-addr"}
)

// WithID returns ctx carrying the id under which a request is logged.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, idKey, id)
}

// ID returns the request id of ctx, or "" when it has none.
func ID(ctx context.Context) string {
	id, _ := ctx.Value(idKey).(string)
	return id
}

// NewID returns a random request id: 16 hexadecimal digits.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WithClientAddr returns ctx carrying the client's address (host:port).
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddrKey, addr)
}

// ClientAddr returns the client's address in ctx, "" when unknown.
func ClientAddr(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey).(string)
	return a
}

// ClientKey names the client of ctx for the per-address limits (see
// AddrKey); "" when its address is unknown.
func ClientKey(ctx context.Context) string { return AddrKey(ClientAddr(ctx)) }

// AddrKey names the client at addr (host:port, or a bare host) for the
// per-address limits: an IPv4 address as it is (an IPv4-mapped IPv6 one
// too), an IPv6 address by its /64 prefix, such as 2001:db8:1:2::/64. A
// client is given a whole /64 (RFC 6177), so counting single IPv6
// addresses would let it pick a fresh budget for every request. What does
// not parse as an address is returned as it is.
func AddrKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// Detached returns a context without ctx's deadline and cancellation that
// keeps only the request id and the client's address: what a WebSocket
// connection, which outlives its upgrade request, needs of it. Keeping the
// whole request context would hold on to its chain of values for the
// connection's life.
func Detached(ctx context.Context) context.Context {
	return WithClientAddr(WithID(context.Background(), ID(ctx)), ClientAddr(ctx))
}

// LogHandler wraps h so that a record logged with a context carrying a
// request id has it under request_id, unless the record names one itself.
// Lines logged while serving a request or a connection so carry its id,
// even from packages that know nothing of this one.
func LogHandler(h slog.Handler) slog.Handler { return idHandler{h} }

type idHandler struct{ slog.Handler }

func (h idHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := ID(ctx); id != "" {
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

func (h idHandler) WithAttrs(as []slog.Attr) slog.Handler { return idHandler{h.Handler.WithAttrs(as)} }

func (h idHandler) WithGroup(name string) slog.Handler { return idHandler{h.Handler.WithGroup(name)} }
