package gqlws

import (
	"context"
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
// watchdog until stop. A panic ends only its round (the next tick runs).
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
			k.transport.opts.Panics.Do(context.Background(), whereKeepalive, k.round)
		case now := <-watch.C:
			k.transport.opts.Panics.Do(context.Background(), whereKeepalive, func() { k.watch(now, timeout) })
		}
	}
}

// silentIntervals is how long, in keepalive intervals, a graphql-transport-ws
// client may send nothing: a live client answers each ping at once, so
// silence past the next ping plus 40% means it vanished. With the default
// 25 s interval a vanished client is dropped within 36 s.
const silentIntervals = 1.4

// watch closes every connection that verdict condemns.
func (k *keepalive) watch(now time.Time, timeout time.Duration) {
	for _, c := range k.transport.snapshot() {
		if code, reason, ok := k.verdict(c, now, timeout); ok {
			c.closeLater(code, reason)
		}
	}
}

// verdict says whether connection c is to be closed at now, and how: with
// 1013 when its current write has been blocked for longer than timeout (the
// client stopped reading; closing the socket is what unblocks the writer),
// with 4403 when its token has expired, and with 1001 when it must answer
// keepalives (graphql-transport-ws) and has been silent too long.
func (k *keepalive) verdict(c *conn, now time.Time, timeout time.Duration) (code int, reason string, ok bool) {
	silentSince := now.Add(-time.Duration(silentIntervals * float64(k.interval))).UnixNano()
	switch {
	case c.closed.Load():
		return 0, "", false
	case c.writingSince.Load() != 0 && c.writingSince.Load() < now.Add(-timeout).UnixNano():
		return CloseTryAgainLater, reasonSlowConsumer, true
	case c.expires.Load() != 0 && c.expires.Load() <= now.UnixNano():
		return CloseForbidden, "Token expired", true
	case c.proto.dropsSilentClients() && c.acked.Load() && c.lastRead.Load() < silentSince:
		return CloseGoingAway, "Keepalive timeout", true
	}
	return 0, "", false
}

// round sends every initialised connection its keepalive frame, without
// waiting for any of them.
func (k *keepalive) round() {
	for _, c := range k.transport.snapshot() {
		if !c.acked.Load() || c.closed.Load() {
			continue
		}
		// Never wait for a connection busy writing: skip its ping this round
		// and do not count the round against it. The client cannot answer a
		// ping it was not sent, so its silence counts from now, as if it had
		// just answered: it has until the next round's ping plus the grace
		// (a writer that is stuck on a vanished client is the write
		// watchdog's to catch).
		if !c.writeMu.TryLock() {
			c.lastRead.Store(max(c.lastRead.Load(), time.Now().UnixNano()))
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
