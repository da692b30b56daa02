package main

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// withClientAddr sets each request's RemoteAddr to its client's address:
// the connection's peer, or, when the peer is one of the trusted proxies,
// the address X-Forwarded-For names (the right-most one that is not itself a
// trusted proxy). Untrusted peers cannot spoof it: their X-Forwarded-For is
// ignored.
func withClientAddr(trusted []netip.Prefix, next http.Handler) http.Handler {
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

// parseTrustedProxies reads TRUSTED_PROXIES: comma-separated addresses or
// CIDR prefixes.
func parseTrustedProxies(s string) ([]netip.Prefix, error) {
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
