package gqlws

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchConn returns a connection speaking proto over a loopback socket whose
// peer reads and discards everything, with permessage-deflate when deflate.
func benchConn(b testing.TB, proto string, deflate bool) *conn {
	b.Helper()
	server, client := loopbackPair(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, client)
	}()
	t := New(Options{Compression: deflate})
	b.Cleanup(func() {
		t.Shutdown()
		_ = server.Close()
		_ = client.Close()
		<-done
	})
	fc := newFrameConn(server)
	fc.deflate = deflate
	return benchConnOver(t, fc, proto)
}

// loopbackPair returns the two ends of a loopback TCP connection.
func loopbackPair(tb testing.TB) (server, client net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(tb, err)
	server, err = ln.Accept()
	require.NoError(tb, err)
	return server, client
}

// benchPayload is a result of about size bytes.
func benchPayload(size int) []byte {
	return []byte(`{"data":{"statusPosted":{"id":"12345","text":"` + strings.Repeat("word ", size/5) + `"}}}`)
}

// BenchmarkDeliverShared is a group's per-member cost of one event: the
// member's frame assembled around the shared result and written to its
// socket. It allocates nothing.
func BenchmarkDeliverShared(b *testing.B) {
	for _, proto := range []string{TransportWS, LegacyWS} {
		for _, deflate := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/deflate=%t", proto, deflate), func(b *testing.B) {
				c := benchConn(b, proto, deflate)
				op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1")}
				result := newSharedResult(benchPayload(400), deflate)
				b.ReportAllocs()
				for b.Loop() {
					c.enqueue(queuedFrame{op: op, result: result})
				}
			})
		}
	}
}

// TestDeliverSharedAllocatesNothing: a member's frame of a shared result
// reaches its socket without a heap allocation, so a fan-out to N
// connections leaves no garbage per connection (garbage brings the
// collector into the next fan-outs: a broadcast to 8,000 that did leave
// some met the collector about every tenth time).
func TestDeliverSharedAllocatesNothing(t *testing.T) {
	for _, proto := range []string{TransportWS, LegacyWS} {
		c := benchConn(t, proto, false)
		op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1")}
		result := newSharedResult(benchPayload(400), false)
		allocs := testing.AllocsPerRun(500, func() { c.enqueue(queuedFrame{op: op, result: result}) })
		assert.Zero(t, allocs, proto)
	}
}

// BenchmarkWritePrivate is the cost of one result of an operation executed
// for its connection alone, once encoded.
func BenchmarkWritePrivate(b *testing.B) {
	for _, proto := range []string{TransportWS, LegacyWS} {
		for _, deflate := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/deflate=%t", proto, deflate), func(b *testing.B) {
				c := benchConn(b, proto, deflate)
				op := &operation{conn: c, id: "1", idJSON: appendJSONString(nil, "1")}
				payload := benchPayload(400)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					c.writeResult(ctx, op, payload)
				}
			})
		}
	}
}

// BenchmarkKeepaliveFrame is the cost of one keepalive frame.
func BenchmarkKeepaliveFrame(b *testing.B) {
	for _, proto := range []string{TransportWS, LegacyWS} {
		b.Run(proto, func(b *testing.B) {
			c := benchConn(b, proto, false)
			k := &keepalive{transport: c.transport}
			c.acked.Store(true)
			c.lastRead.Store(time.Now().Add(time.Hour).UnixNano()) // never silent for the watchdog
			c.transport.connsMu.Lock()
			c.transport.conns[c] = struct{}{}
			c.transport.connsMu.Unlock()
			b.Cleanup(func() { c.transport.forget(c) }) // before Shutdown, which would close it
			b.ReportAllocs()
			for b.Loop() {
				k.round()
			}
		})
	}
}
