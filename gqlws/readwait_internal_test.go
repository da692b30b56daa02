package gqlws

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFrameConnStopsAtFrameBoundaries sends messages of every length class
// (7-bit, 16-bit and 64-bit lengths), fragmented messages and control
// frames, back to back so that several share a TCP segment, through a
// frameConn under gorilla's reader. Every message must arrive intact, and
// after each one nothing of the next may have been read from the socket:
// that is what makes waiting on the socket between messages safe.
func TestFrameConnStopsAtFrameBoundaries(t *testing.T) {
	sizes := []int{300000, 70000, 65536, 65535, 1000, 127, 126, 125, 124, 1, 0, 3} // the small ones last: they fit in one read
	type result struct {
		data     []byte
		boundary bool
		pending  bool
	}
	results := make(chan result, 2*len(sizes))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &hijacker{ResponseWriter: w}
		up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
		ws, err := up.Upgrade(hj, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.SetReadLimit(1 << 20)
		for i := 0; ; i++ {
			_, data, err := ws.ReadMessage()
			if err != nil {
				close(results)
				return
			}
			// With the socket at a frame boundary, the wait must return at
			// once exactly when the client has sent more (it sends every
			// message before reading any answer), and everything it sent is
			// still on the socket, not in gorilla's buffer.
			boundary := hj.socket.atBoundary()
			pending := boundary && i < len(sizes)-1 && hj.socket.waitReadable()
			results <- result{data: data, boundary: boundary, pending: pending}
		}
	}))
	defer srv.Close()

	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	// Every frame goes out in one write, so the server's socket holds many
	// messages at once: a reader that buffered ahead would leave the next
	// message in its buffer and the wait for the socket would hang.
	var stream []byte
	var want [][]byte
	for i, n := range sizes {
		msg := bytes.Repeat([]byte{byte('a' + i)}, n)
		want = append(want, msg)
		stream = append(stream, clientFrame(websocket.PingMessage, true, []byte("p"))...)
		if n < 1000 {
			stream = append(stream, clientFrame(websocket.TextMessage, true, msg)...)
			continue
		}
		// Longer messages are fragmented into continuation frames.
		third := n / 3
		stream = append(stream, clientFrame(websocket.TextMessage, false, msg[:third])...)
		stream = append(stream, clientFrame(0, false, msg[third:2*third])...)
		stream = append(stream, clientFrame(0, true, msg[2*third:])...)
	}
	_, err = client.NetConn().Write(stream)
	require.NoError(t, err)
	for i, w := range want {
		select {
		case r := <-results:
			assert.Equal(t, len(w), len(r.data), "message %d", i)
			assert.True(t, bytes.Equal(w, r.data), "message %d intact", i)
			assert.True(t, r.boundary, "message %d: socket left at a frame boundary", i)
			if i < len(want)-1 {
				assert.True(t, r.pending, "message %d: the next one is still on the socket", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d did not arrive", i)
		}
	}
	require.NoError(t, client.Close())
	select {
	case <-results:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the close")
	}
}

// clientFrame encodes one masked client frame.
func clientFrame(opcode int, fin bool, payload []byte) []byte {
	b0 := byte(opcode)
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, key...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// TestFrameConnHeaderSplitAcrossReads feeds two frames one byte per read,
// so that every header arrives in pieces: the frame boundaries are still
// found exactly where they are.
func TestFrameConnHeaderSplitAcrossReads(t *testing.T) {
	first := append([]byte{0x81, 0x80 | 126, 0x01, 0x2c, 1, 2, 3, 4}, bytes.Repeat([]byte("x"), 300)...) // masked, 16-bit length 300
	second := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 2, 9, 9, 9, 9, 'h', 'i'}                     // masked, 64-bit length 2
	fc := &frameConn{Conn: &trickle{data: append(append([]byte{}, first...), second...)}}
	buf := make([]byte, 4096)
	read := 0
	for read < len(first)+len(second) {
		n, err := fc.Read(buf)
		require.NoError(t, err)
		read += n
		atEnd := read == len(first) || read == len(first)+len(second)
		require.Equal(t, atEnd, fc.atBoundary(), "after %d bytes", read)
	}
}

// trickle is a net.Conn whose every read returns at most one byte.
type trickle struct {
	net.Conn
	data []byte
}

// Read returns the next byte, or io.EOF after the last.
func (c *trickle) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1)], c.data)
	c.data = c.data[n:]
	return n, nil
}
