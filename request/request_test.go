package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/request"
)

// TestAddrKey: IPv4 clients are counted by address, IPv6 clients by the
// /64 they own, whatever the port and however the address is written.
func TestAddrKey(t *testing.T) {
	cases := []struct{ name, addr, want string }{
		{"IPv4 with port", "203.0.113.7:5000", "203.0.113.7"},
		{"IPv4 bare", "203.0.113.7", "203.0.113.7"},
		{"IPv4-mapped IPv6", "[::ffff:203.0.113.7]:80", "203.0.113.7"},
		{"IPv6 by its /64", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::/64"},
		{"another address of the same /64", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"written differently", "[2001:0DB8:0001:0002::ffff%eth0]:1", "2001:db8:1:2::/64"},
		{"the next /64 is another client", "[2001:db8:1:3::1]:443", "2001:db8:1:3::/64"},
		{"loopback", "[::1]:9", "::/64"},
		{"IPv4 neighbours differ", "198.51.100.8", "198.51.100.8"},
		{"IPv6 bare", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6 with a zone", "fe80::1%eth0", "fe80::/64"},
		{"IPv4-mapped IPv6, bare", "::ffff:198.51.100.7", "198.51.100.7"},
		{"not an address", "pipe", "pipe"},
		{"a host name: its host part", "example.com:80", "example.com"},
		{"unknown", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, request.AddrKey(c.addr))
		})
	}
}
