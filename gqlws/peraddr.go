package gqlws

import (
	"errors"
	"net"
	"net/http"
	"sync"

	"github.com/switchboardhq/switchboard/request"
)

// The per-address connection limit (Options.MaxConnsPerAddr) counts
// handshakes as they begin, not connections once they are open: an upgrade
// takes its address's place (reserve) in the same critical section that
// checks the limit, before the handshake, and gives it back if it does not
// end as a registered connection (release), or when that connection closes
// (forget). So any number of parallel handshakes from one address gets
// exactly MaxConnsPerAddr connections.

// errAddrFull refuses an upgrade from an address that holds
// Options.MaxConnsPerAddr connections.
var errAddrFull = errors.New("gqlws: too many connections from this address")

// reserve takes one of key's places for a connection about to be upgraded.
// It fails with ErrShuttingDown once Shutdown has begun, and with
// errAddrFull when key holds Options.MaxConnsPerAddr places already. A nil
// error obliges the caller to give the place back: by release, or by
// registering the connection, which forget releases.
func (t *Transport) reserve(key string) error {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	switch {
	case t.shutdown:
		return ErrShuttingDown
	case t.opts.MaxConnsPerAddr > 0 && t.perAddr[key] >= t.opts.MaxConnsPerAddr:
		return errAddrFull
	}
	t.perAddr[key]++
	return nil
}

// release gives back a place reserve took for key.
func (t *Transport) release(key string) {
	t.connsMu.Lock()
	t.releaseLocked(key)
	t.connsMu.Unlock()
}

// releaseLocked is release with connsMu held.
func (t *Transport) releaseLocked(key string) {
	if t.perAddr[key]--; t.perAddr[key] <= 0 {
		delete(t.perAddr, key)
	}
}

// clientHost is the client's address without the port.
func clientHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// ErrAddressFull refuses a HoldAddress for an address that holds
// Options.MaxConnsPerAddr connections already.
var ErrAddressFull = errAddrFull

// HoldAddress takes one of the places of r's client address among its
// connections (Options.MaxConnsPerAddr), for a long-lived stream of
// another transport (such as GraphQL over Server-Sent Events) that counts
// against the same limit as WebSockets. It fails with ErrShuttingDown once
// Shutdown has begun, and with ErrAddressFull when the address holds its
// limit. release gives the place back; calling it more than once is safe.
func (t *Transport) HoldAddress(r *http.Request) (release func(), err error) {
	key := request.AddrKey(clientHost(r))
	if err := t.reserve(key); err != nil {
		if errors.Is(err, errAddrFull) {
			t.refuse(r.Context(), "connections_per_address")
		}
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { t.release(key) }) }, nil
}
