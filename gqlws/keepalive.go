package gqlws

import (
	"sync"
	"time"
)

// keepalive is one timer for every connection of a Transport: each interval
// it sends every initialised connection its protocol's keepalive frame (ping
// on graphql-transport-ws, ka on the legacy protocol); several times per
// second (and per interval) its watchdog disconnects clients that must
// answer keepalives and sent nothing, not even the pong, for
// silentIntervals intervals, and clients whose pending write is stuck. One
// goroutine serves all connections, instead of tickers and deadlines per
// connection.
type keepalive struct {
	transport *Transport
	interval  time.Duration
	done      chan struct{}  // closed by stop
	stopOnce  sync.Once      // closes done
	running   sync.WaitGroup // the goroutine (run)
}

// newKeepalive starts the keepalive of t's connections, every interval,
// until stop.
func newKeepalive(t *Transport, interval time.Duration) *keepalive {
	k := &keepalive{transport: t, interval: interval, done: make(chan struct{})}
	k.running.Add(1)
	go k.run()
	return k
}

// run is the keepalive's goroutine: it sends the keepalives and runs the
// watchdog until stop.
func (k *keepalive) run() {
	defer k.running.Done()
	tick := time.NewTicker(k.interval)
	defer tick.Stop()
	timeout := k.transport.opts.WriteTimeout
	watch := time.NewTicker(min(timeout/4, k.interval/5, time.Second))
	defer watch.Stop()
	for {
		select {
		case <-k.done:
			return
		case <-tick.C:
			k.round()
		case now := <-watch.C:
			k.watch(now, timeout)
		}
	}
}

// silentIntervals is how long, in keepalive intervals, a graphql-transport-ws
// client may send nothing: a live client answers each ping at once, so
// silence past the next ping plus 40% means it vanished. With the default
// 25 s interval a vanished client is dropped within 36 s.
const silentIntervals = 1.4

// watch closes, with 1013, every connection whose current write has been
// blocked for longer than timeout: the client stopped reading (closing the
// socket is what unblocks the writer); with 4403, every connection whose
// token has expired; and with 1001 every client that must answer
// keepalives (graphql-transport-ws) and has been silent too long.
func (k *keepalive) watch(now time.Time, timeout time.Duration) {
	writeLimit := now.Add(-timeout).UnixNano()
	silentSince := now.Add(-time.Duration(silentIntervals * float64(k.interval))).UnixNano()
	for _, c := range k.transport.snapshot() {
		switch {
		case c.closed.Load():
		case c.writingSince.Load() != 0 && c.writingSince.Load() < writeLimit:
			go c.close(CloseTryAgainLater, "Slow consumer")
		case c.expires.Load() != 0 && c.expires.Load() <= now.UnixNano():
			go c.close(CloseForbidden, "Token expired")
		case c.proto.dropsSilentClients() && c.acked.Load() && c.lastRead.Load() < silentSince:
			go c.close(CloseGoingAway, "Keepalive timeout")
		}
	}
}

// round sends every initialised connection its keepalive frame, without
// waiting for any of them.
func (k *keepalive) round() {
	for _, c := range k.transport.snapshot() {
		if !c.acked.Load() || c.closed.Load() {
			continue
		}
		// Never wait for a connection busy writing: skip its ping this round
		// and do not count the round against it (a writer that is stuck on
		// a vanished client is the write watchdog's to catch).
		if !c.writeMu.TryLock() {
			c.lastRead.Store(max(c.lastRead.Load(), time.Now().Add(-k.interval).UnixNano()))
			continue
		}
		if !c.closed.Load() {
			c.sendFramed(c.proto.keepaliveFrame()) // never waits for one client
		}
		c.writeMu.Unlock()
		c.flushIfPending()
	}
}

// stop stops the keepalive and waits for its goroutine to end. It may be
// called more than once.
func (k *keepalive) stop() {
	k.stopOnce.Do(func() { close(k.done) })
	k.running.Wait()
}
