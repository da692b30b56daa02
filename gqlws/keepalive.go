package gqlws

import (
	"sync"
	"time"
)

// keepalive is one timer for every connection of a Transport: each interval
// it sends ping (graphql-transport-ws) or ka (legacy) to every initialised
// connection, and disconnects graphql-transport-ws clients that sent nothing
// for two intervals; several times per write timeout it disconnects clients
// whose pending write is stuck. One goroutine serves all connections,
// instead of tickers and deadlines per connection.
type keepalive struct {
	t        *Transport
	interval time.Duration
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var pingFrame = []byte(`{"type":"ping"}`)

func newKeepalive(t *Transport, interval time.Duration) *keepalive {
	k := &keepalive{t: t, interval: interval, done: make(chan struct{})}
	k.wg.Add(1)
	go k.run()
	return k
}

func (k *keepalive) run() {
	defer k.wg.Done()
	tick := time.NewTicker(k.interval)
	defer tick.Stop()
	timeout := k.t.opts.WriteTimeout
	watch := time.NewTicker(min(timeout/4, time.Second))
	defer watch.Stop()
	for {
		select {
		case <-k.done:
			return
		case now := <-tick.C:
			k.round(now)
		case now := <-watch.C:
			k.watchWrites(now, timeout)
		}
	}
}

// watchWrites closes, with 1013, every connection whose current write has
// been blocked for longer than timeout: the client stopped reading (closing
// the socket is what unblocks the writer); and, with 4403, every connection
// whose token has expired.
func (k *keepalive) watchWrites(now time.Time, timeout time.Duration) {
	limit := now.Add(-timeout).UnixNano()
	for _, c := range k.t.snapshot() {
		if since := c.writingSince.Load(); since != 0 && since < limit {
			go c.close(CloseTryAgainLater, "Slow consumer")
		} else if exp := c.expires.Load(); exp != 0 && exp <= now.UnixNano() {
			go c.close(CloseForbidden, "Token expired")
		}
	}
}

// round visits every connection once.
func (k *keepalive) round(now time.Time) {
	silentSince := now.Add(-2 * k.interval).UnixNano()
	for _, c := range k.t.snapshot() {
		if !c.acked.Load() || c.closed.Load() {
			continue
		}
		if c.proto == TransportWS && c.lastRead.Load() < silentSince {
			c.close(CloseGoingAway, "Keepalive timeout")
			continue
		}
		// A connection busy writing is evidently alive; never wait for it.
		if !c.wmu.TryLock() {
			continue
		}
		if !c.closed.Load() {
			frame := kaFrame
			if c.proto == TransportWS {
				frame = pingFrame
			}
			c.sendSoon(frame) // never waits for one client
		}
		c.wmu.Unlock()
		c.flushIfPending()
	}
}

func (k *keepalive) stop() {
	k.once.Do(func() { close(k.done) })
	k.wg.Wait()
}
