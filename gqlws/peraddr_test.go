package gqlws_test

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/request"
)

// dialStatus opens a connection to h as the client forwardedFor (sent in
// X-Forwarded-For, which the endpoint trusts from loopback; "" for the
// peer itself) and returns the handshake's HTTP status; an open connection
// is closed when t ends.
func dialStatus(t *testing.T, h *harness, forwardedFor string) int {
	header := http.Header{}
	if forwardedFor != "" {
		header.Set("X-Forwarded-For", forwardedFor)
	}
	d := websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}, HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(h.srv.URL, "http"), header)
	if err != nil {
		if resp == nil {
			t.Errorf("dial: %v", err)
			return 0
		}
		return resp.StatusCode
	}
	t.Cleanup(func() { _ = c.Close() })
	return resp.StatusCode
}

// behindProxy trusts X-Forwarded-For from loopback, as TRUSTED_PROXIES=127.0.0.1
// does.
func behindProxy(next http.Handler) http.Handler {
	return request.ResolveClient([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, next)
}

// barrier holds requests until size of them have arrived, then lets them
// all go on at once (and starts over), so that parallel handshakes reach
// the transport together. A request that waits 10 s goes on alone.
type barrier struct {
	mu      sync.Mutex
	size    int
	waiting int
	release chan struct{}
}

// newBarrier returns a barrier for groups of size requests.
func newBarrier(size int) *barrier { return &barrier{size: size, release: make(chan struct{})} }

// wrap holds each request at the barrier before next serves it.
func (b *barrier) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		release := b.release
		if b.waiting++; b.waiting == b.size {
			close(release)
			b.waiting, b.release = 0, make(chan struct{})
		}
		b.mu.Unlock()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		next.ServeHTTP(w, r)
	})
}

// TestConnsPerAddrUnderParallelHandshakes: with a limit of n connections
// per address, n+k handshakes racing from one address open exactly n
// connections; the others are refused with 429, whichever of them wins.
// (The handshakes are held until all have arrived, so they race for
// places as hard as they can.)
func TestConnsPerAddrUnderParallelHandshakes(t *testing.T) {
	const n, k = 5, 15
	gate := newBarrier(n + k)
	h := newHarnessBehind(t, gqlws.Options{MaxConnsPerAddr: n}, func(next http.Handler) http.Handler {
		return behindProxy(gate.wrap(next))
	})
	// Each round from an address of its own; the last one from the
	// loopback peer itself, without a proxy's header.
	for _, client := range []string{"198.51.100.1", "198.51.100.2", "2001:db8::1", ""} {
		statuses := make(chan int, n+k)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n + k {
			wg.Go(func() {
				<-start
				statuses <- dialStatus(t, h, client)
			})
		}
		close(start)
		wg.Wait()
		close(statuses)
		count := map[int]int{}
		for s := range statuses {
			count[s]++
		}
		assert.Equal(t, map[int]int{http.StatusSwitchingProtocols: n, http.StatusTooManyRequests: k}, count, "from %q", client)
	}
}

// TestConnsPerAddrCountsIPv6By64: IPv6 clients are counted per /64, so a
// client cannot escape the limit by using another address of its own
// prefix; another /64 (another subscriber) has places of its own, and so
// do IPv4 clients.
func TestConnsPerAddrCountsIPv6By64(t *testing.T) {
	h := newHarnessBehind(t, gqlws.Options{MaxConnsPerAddr: 2}, behindProxy)
	require.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, h, "2001:db8:1:2::1"))
	require.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, h, "2001:db8:1:2::2"))
	assert.Equal(t, http.StatusTooManyRequests, dialStatus(t, h, "2001:db8:1:2:ffff:ffff:ffff:ffff"), "a third address of the same /64")
	assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, h, "2001:db8:1:3::1"), "the next /64")
	assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, h, "198.51.100.1"))
	assert.Equal(t, http.StatusSwitchingProtocols, dialStatus(t, h, "198.51.100.2"), "IPv4 addresses are counted one by one")
}
