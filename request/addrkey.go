package request

import "net/netip"

// AddrKey returns the key under which limits count the client at addr (an
// IP address, with or without a port): an IPv4 address is its own key; an
// IPv6 address is keyed by its /64 prefix ("2001:db8:1:2::/64"), because one
// subscriber is usually given a whole /64 and can pick any address in it;
// an IPv4-mapped IPv6 address counts as the IPv4 address it maps. What does
// not parse as an address is its own key.
func AddrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return addr
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64) // an IPv6 address always has a /64
	return p.String()
}
