package request

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// AssignID gives every request an id (the client's X-Request-ID when it
// sends a sane one: 1 to 64 printable ASCII characters), echoes it in the
// response, and carries it and the client's address in the request's
// context (see ID and ClientAddr).
func AssignID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c > '~' }) {
			id = NewID()
		}
		w.Header().Set("X-Request-ID", id)
		ctx := WithClientAddr(WithID(r.Context(), id), r.RemoteAddr)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ResolveClient sets each request's RemoteAddr to its client's address: the
// connection's peer, or, when the peer is one of the trusted proxies, the
// address X-Forwarded-For names (the right-most one that is not itself a
// trusted proxy). Untrusted peers cannot spoof it: their X-Forwarded-For is
// ignored. With no trusted proxies it returns next unchanged.
func ResolveClient(trusted []netip.Prefix, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !isTrusted(peer.Addr()) {
			next.ServeHTTP(w, r)
			return
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: trust nothing beyond it
			}
			if !isTrusted(a) || i == 0 {
				r2 := *r
				r2.RemoteAddr = net.JoinHostPort(a.Unmap().String(), "0")
				next.ServeHTTP(w, &r2)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ParseTrustedProxies reads a TRUSTED_PROXIES value: comma-separated IP
// addresses or CIDR prefixes.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
