package faultproxy_test

import (
	"bufio"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line and reads it back within timeout.
func roundTrip(c net.Conn, r *bufio.Reader, line string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return got, err
}

// TestProxyFaults: forwarding, a stall that holds bytes until forwarding
// resumes (for open and for new connections), latency, and a reset.
func TestProxyFaults(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)

	got, err := roundTrip(c, r, "one", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "one\n", got, "forwards")

	p.Stall()
	_, err = roundTrip(c, r, "two", 200*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "a stalled proxy answers nothing")
	late, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "a stalled proxy still accepts, as a partitioned host's SYN-ACK may come from a load balancer")
	defer late.Close()
	lateR := bufio.NewReader(late)
	_, err = roundTrip(late, lateR, "late", 200*time.Millisecond)
	require.Error(t, err)

	p.Forward()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "two\n", got, "held bytes go through once forwarding resumes")
	_ = late.SetDeadline(time.Now().Add(time.Second))
	got, err = lateR.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "late\n", got)

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	_, err = roundTrip(c, r, "slow", time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "latency each way")
	p.Forward()

	p.Reset()
	_, err = roundTrip(c, r, "gone", time.Second)
	assert.Error(t, err, "a reset drops the connection")
	fresh, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer fresh.Close()
	got, err = roundTrip(fresh, bufio.NewReader(fresh), "again", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "again\n", got, "new connections after a reset are forwarded")
}

// TestProxyTap: the tap sees what each client sends, in order, before it
// is forwarded, and nothing the server answers.
func TestProxyTap(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	var mu sync.Mutex
	seen := map[net.Conn]string{}
	p.Tap(func(client net.Conn, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		seen[client] += string(b)
	})
	for _, line := range []string{"a", "b"} {
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		r := bufio.NewReader(c)
		for i := range 3 {
			got, err := roundTrip(c, r, line+strconv.Itoa(i), time.Second)
			require.NoError(t, err)
			assert.Equal(t, line+strconv.Itoa(i)+"\n", got)
		}
		_ = c.Close()
	}
	p.Tap(nil)
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []string{"a0\na1\na2\n", "b0\nb1\nb2\n"}, slices.Collect(maps.Values(seen)))
}
