package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/request"
)

func TestAddrKey(t *testing.T) {
	cases := []struct{ name, addr, want string }{
		{"IPv4", "198.51.100.7", "198.51.100.7"},
		{"IPv4 with a port", "198.51.100.7:4242", "198.51.100.7"},
		{"IPv4 neighbours differ", "198.51.100.8", "198.51.100.8"},
		{"IPv6", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6 in the same /64", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"IPv6 in the next /64", "2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"IPv6 with a port", "[2001:db8:1:2::9]:443", "2001:db8:1:2::/64"},
		{"IPv6 loopback", "::1", "::/64"},
		{"IPv6 with a zone", "fe80::1%eth0", "fe80::/64"},
		{"IPv4-mapped IPv6", "::ffff:198.51.100.7", "198.51.100.7"},
		{"IPv4-mapped IPv6 with a port", "[::ffff:198.51.100.7]:80", "198.51.100.7"},
		{"not an address", "pipe", "pipe"},
		{"empty", "", ""},
		{"host name", "example.com:80", "example.com:80"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, request.AddrKey(tc.addr))
		})
	}
}
