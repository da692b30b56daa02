package gqlws

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"syscall"
	"time"
)

// An idle connection's cost is mostly the stack of the goroutine that waits
// for its next message. A goroutine keeps the largest stack it ever used, and
// gorilla/websocket's blocking read path (ReadMessage down to the poller)
// needs a little more than the 2 KiB a goroutine starts with, so a reader
// parked in it holds 4 KiB. Instead, the connection's goroutine waits for
// the socket to become readable on a shallow path (syscall.RawConn), and
// only then reads and handles the message on a short-lived goroutine: the
// waiter keeps its 2 KiB stack for the life of the connection.
//
// Waiting on the socket is only correct while gorilla's read buffer is
// empty, so the socket is wrapped in a frameConn that never hands gorilla
// bytes beyond the frame it is reading: when ReadMessage returns a message,
// nothing of the next one sits in a buffer.

// frameConn is the hijacked connection as gorilla/websocket sees it. Its
// Read follows the client's frame boundaries (RFC 6455 section 5.2) and
// returns at most the rest of the current frame's header or payload. It only
// limits how many bytes each read returns, never their content, so a client
// that breaks the framing rules meets gorilla's own checks unchanged.
type frameConn struct {
	net.Conn
	raw syscall.RawConn // nil when the socket offers none (waitReadable then reads inline)
	// write takes gorilla's writes (control frames), so that they are
	// serialised with the connection's own; nil until the connection is set
	// up (the handshake's response goes straight out).
	write func([]byte) (int, error)
	// deflate reports whether the handshake's response (the first write)
	// agreed to permessage-deflate: gorilla decides and writes it, and this
	// is where the decision can be seen.
	deflate    bool
	handshaken bool // the handshake's response has been written

	// trySend's write: writeRaw bound once, and its input and results
	// (trySend runs under the connection's write lock, one at a time).
	writeFn func(fd uintptr) bool
	sending []byte
	sent    int
	sendErr error

	header     [14]byte // the frame header read so far
	headerRead int      // bytes of header filled
	headerLen  int      // the header's length, once its first two bytes are known
	frameLeft  int64    // bytes of the current frame still to hand out after its header
}

// newFrameConn wraps c, with the raw socket under it when it has one.
func newFrameConn(c net.Conn) *frameConn {
	fc := &frameConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			fc.raw, fc.writeFn = raw, fc.writeRaw
		}
	}
	return fc
}

// Read reads no further than the end of the current frame part.
func (fc *frameConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if fc.frameLeft > 0 {
		n, err := fc.Conn.Read(p[:min(int64(len(p)), fc.frameLeft)])
		fc.frameLeft -= int64(n)
		return n, err
	}
	want := 2 - fc.headerRead
	if fc.headerRead >= 2 {
		want = fc.headerLen - fc.headerRead
	}
	n, err := fc.Conn.Read(p[:min(len(p), want)])
	copy(fc.header[fc.headerRead:], p[:n])
	fc.headerRead += n
	if fc.headerRead == 2 {
		fc.headerLen = 2 + extLen(fc.header[1]&0x7f)
		if fc.header[1]&0x80 != 0 {
			fc.headerLen += 4 // masking key
		}
		if fc.header[1]&0x7f < 126 {
			// The length is known already: header rest and payload together.
			fc.frameLeft = int64(fc.headerLen-2) + int64(fc.header[1]&0x7f)
			fc.headerRead = 0
			return n, err
		}
	}
	if fc.headerRead >= 2 && fc.headerRead == fc.headerLen {
		fc.frameLeft = payloadLen(fc.header[:fc.headerRead])
		fc.headerRead = 0
	}
	return n, err
}

// Write hands gorilla's writes to the connection's write path.
func (fc *frameConn) Write(p []byte) (int, error) {
	if fc.write != nil {
		return fc.write(p)
	}
	if !fc.handshaken {
		fc.handshaken = true
		fc.deflate = bytes.Contains(p, []byte("\r\nSec-WebSocket-Extensions: permessage-deflate"))
	}
	return fc.Conn.Write(p)
}

// SetWriteDeadline ignores gorilla's write deadlines: a deadline left on the
// socket would cut the connection's own later writes short. Writes are
// bounded by the keepalive's watchdog instead.
func (fc *frameConn) SetWriteDeadline(time.Time) error { return nil }

// trySend writes as much of p as the socket takes without blocking. Where
// that cannot be done it takes nothing: the caller's flusher writes it all.
func (fc *frameConn) trySend(p []byte) (int, error) {
	if fc.raw == nil {
		return 0, nil
	}
	fc.sending = p
	err := fc.raw.Write(fc.writeFn)
	n, werr := fc.sent, fc.sendErr
	fc.sending, fc.sent, fc.sendErr = nil, 0, nil
	if err != nil {
		return 0, err
	}
	return n, werr
}

// atBoundary reports whether the next byte on the socket starts a frame.
func (fc *frameConn) atBoundary() bool { return fc.headerRead == 0 && fc.frameLeft == 0 }

// extLen is the length of the extended payload length that follows a
// frame header's 7-bit length b: 2 bytes for 126, 8 for 127, none below.
func extLen(b byte) int {
	switch b {
	case 126:
		return 2
	case 127:
		return 8
	}
	return 0
}

// payloadLen reads the extended payload length of a complete header whose
// 7-bit length is 126 or 127. A length too large to be real is capped:
// gorilla refuses the frame (read limit) before reading that far.
func payloadLen(h []byte) int64 {
	var n uint64
	for _, b := range h[2 : 2+extLen(h[1]&0x7f)] {
		n = n<<8 | uint64(b)
	}
	return int64(min(n, 1<<62))
}

// waitReadable blocks until the socket has bytes to read (or has been
// closed), on a shallow stack. It reports false when it cannot wait this way
// (no raw socket, a platform without MSG_PEEK, or a frame part still being
// read); the caller then reads directly.
func (fc *frameConn) waitReadable() bool {
	if fc.raw == nil || !fc.atBoundary() {
		return false
	}
	return waitPeek(fc.raw)
}

// hijacker hands gorilla's Upgrader a frameConn instead of the bare socket.
type hijacker struct {
	http.ResponseWriter
	socket *frameConn // the hijacked socket, once Hijack has been called
}

// Hijack takes over the connection as http.Hijacker does, wrapped in a
// frameConn.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.socket = newFrameConn(nc)
	return h.socket, brw, nil
}
