package gqlws

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestSkippedPingDoesNotCountAgainstTheClient: a round that finds a
// connection busy writing skips its ping; the client, never pinged, sends
// nothing, and must not be dropped as silent before the next round's ping
// has had its grace. (Counting the skipped round from one interval back
// dropped live clients 0.4 intervals later under load: 4,786 of 10,000
// loadgen clients in one run.)
func TestSkippedPingDoesNotCountAgainstTheClient(t *testing.T) {
	const interval = 25 * time.Second
	tr := New(Options{KeepAlive: time.Hour})
	defer tr.Shutdown()
	k := &keepalive{transport: tr, interval: interval}
	c := &conn{transport: tr, proto: transportWS{}}
	c.acked.Store(true)
	// It subscribed 20 s before the round and has sent nothing since: a
	// client answers pings, and none was due yet.
	c.lastRead.Store(time.Now().Add(-20 * time.Second).UnixNano())
	tr.connsMu.Lock()
	tr.conns[c] = struct{}{}
	tr.connsMu.Unlock()

	c.writeMu.Lock() // a fan-out is writing to it when the round comes
	k.round()
	c.writeMu.Unlock()
	round := time.Now()
	tr.connsMu.Lock()
	delete(tr.conns, c) // it has no socket for Shutdown to close
	tr.connsMu.Unlock()

	for _, after := range []time.Duration{time.Second, 11 * time.Second, interval, interval + 9*time.Second} {
		_, reason, drop := k.verdict(c, round.Add(after), time.Minute)
		assert.False(t, drop, "%s after the skipped round: %s", after, reason)
	}
	// Still silent a whole grace after the next round's ping: it is gone.
	code, _, drop := k.verdict(c, round.Add(time.Duration(silentIntervals*float64(interval))+time.Second), time.Minute)
	assert.True(t, drop)
	assert.Equal(t, CloseGoingAway, code)
}

// TestSilentClientIsDropped: a client that was pinged and never answered
// is dropped once it has been silent for silentIntervals intervals, and not
// before; a legacy client, which need not answer, is never dropped for it.
func TestSilentClientIsDropped(t *testing.T) {
	const interval = 25 * time.Second
	tr := New(Options{KeepAlive: time.Hour})
	defer tr.Shutdown()
	k := &keepalive{transport: tr, interval: interval}
	last := time.Now()
	for _, tc := range []struct {
		name  string
		proto protocol
		after time.Duration
		drop  bool
	}{
		{"answering in time", transportWS{}, 34 * time.Second, false},
		{"silent too long", transportWS{}, 36 * time.Second, true},
		{"legacy, silent", legacyWS{}, time.Hour, false},
	} {
		c := &conn{transport: tr, proto: tc.proto}
		c.acked.Store(true)
		c.lastRead.Store(last.UnixNano())
		_, _, drop := k.verdict(c, last.Add(tc.after), time.Minute)
		assert.Equal(t, tc.drop, drop, tc.name)
	}
}
