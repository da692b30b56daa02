package gqlws_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
)

// countingConn counts the bytes read from the socket: what the server sent.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

// Read reads from the socket and counts what it read.
func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wireClient is a client connection and the bytes it received.
type wireClient struct {
	c    *websocket.Conn
	read atomic.Int64
}

// dialWire connects with subprotocol proto, offering permessage-deflate when
// compress, initialises and starts the operation query under id, with $a
// set to "0".
func (h *harness) dialWire(t *testing.T, proto string, compress bool, id, query string) *wireClient {
	t.Helper()
	w := &wireClient{}
	d := websocket.Dialer{
		Subprotocols:      []string{proto},
		EnableCompression: compress,
		NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			return countingConn{Conn: c, n: &w.read}, err
		},
	}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(h.srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	assert.Equal(t, compress, strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"),
		"compression negotiated exactly when offered")
	w.c = c
	require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
	start := "subscribe"
	if proto == gqlws.LegacyWS {
		start = "start"
	}
	require.NoError(t, c.WriteJSON(map[string]any{"type": start, "id": id, "payload": map[string]any{
		"query": query, "variables": map[string]any{"a": "0"},
	}}))
	return w
}

// results reads frames until n results of the operation arrived and
// returns their payloads.
func (w *wireClient) results(t *testing.T, n int) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for len(out) < n {
		_ = w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var f frame
		require.NoError(t, w.c.ReadJSON(&f), "after %d results", len(out))
		switch f.Type {
		case "next", "data":
			out = append(out, f.Payload)
		case "error", "connection_error":
			t.Fatalf("%s: %s", f.Type, f.Payload)
		}
	}
	return out
}

// TestCompressionSendsTheSameResultsInFewerBytes: with compression on, a
// client that offers permessage-deflate receives exactly what a client that
// does not receives (shared live results, per-connection query results,
// both protocols, any operation id), in far fewer bytes; a client that
// offers nothing gets plain frames.
func TestCompressionSendsTheSameResultsInFewerBytes(t *testing.T) {
	h := newHarness(t, gqlws.Options{Compression: true})
	const sub = `subscription($a: ID) { statusPosted(after: $a) { id text author { name } } }`
	plain := h.dialWire(t, gqlws.TransportWS, false, "1", sub)
	zipped := h.dialWire(t, gqlws.TransportWS, true, "a-longer-operation-id", sub)
	legacy := h.dialWire(t, gqlws.LegacyWS, true, "legacy", sub)

	// Long statuses are compressed, short ones are not; both arrive.
	const total = 40
	for i := range total {
		text := "short"
		if i%4 != 0 {
			text = strings.Repeat("the quick brown fox jumps over the lazy dog ", 10)
		}
		h.post(t, text)
	}
	want := plain.results(t, total)
	assert.Equal(t, want, zipped.results(t, total), "the compressed client got the same results")
	assert.Equal(t, want, legacy.results(t, total), "the legacy compressed client got the same results")
	t.Logf("received %d bytes plain, %d compressed (legacy: %d)", plain.read.Load(), zipped.read.Load(), legacy.read.Load())
	assert.Less(t, zipped.read.Load()*2, plain.read.Load(), "compressed to less than half, the long id included")

	// A query's result is written for one connection, compressed alike.
	const query = `query { statuses(first: 40) { edges { node { id text } } } }`
	plainQ := h.dialWire(t, gqlws.TransportWS, false, "q", query)
	zippedQ := h.dialWire(t, gqlws.TransportWS, true, "q", query)
	got := zippedQ.results(t, 1)
	assert.JSONEq(t, string(plainQ.results(t, 1)[0]), string(got[0]))
	assert.Less(t, zippedQ.read.Load()*4, plainQ.read.Load(), "a repetitive page compresses well")
	// The same result for another connection and operation id: compressed
	// once, the id still its own.
	again := h.dialWire(t, gqlws.LegacyWS, true, "another-id", query)
	assert.JSONEq(t, string(got[0]), string(again.results(t, 1)[0]))
}

// TestCompressedMessagesAreBoundedWhenInflated: the message size limit holds
// for the decompressed message, so a small compressed message that inflates
// past it closes the connection with 1009 instead of taking the memory.
func TestCompressedMessagesAreBoundedWhenInflated(t *testing.T) {
	h := newHarness(t, gqlws.Options{Compression: true, ReadLimit: 64 << 10})
	d := websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}, EnableCompression: true}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(h.srv.URL, "http"), nil)
	require.NoError(t, err)
	defer c.Close()
	c.EnableWriteCompression(true)
	require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
	var ack frame
	require.NoError(t, c.ReadJSON(&ack))
	require.Equal(t, "connection_ack", ack.Type)

	// Under the limit, compressed: answered.
	require.NoError(t, c.WriteJSON(map[string]any{"type": "ping", "payload": map[string]any{"pad": strings.Repeat("a", 32<<10)}}))
	var pong frame
	require.NoError(t, c.ReadJSON(&pong))
	require.Equal(t, "pong", pong.Type)

	// 8 MiB that compress to a few KiB: refused.
	bomb := append([]byte(`{"type":"ping","payload":{"pad":"`), bytes.Repeat([]byte("a"), 8<<20)...)
	require.NoError(t, c.WriteMessage(websocket.TextMessage, append(bomb, `"}}`...)))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "closed: %v", err)
	assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
}
