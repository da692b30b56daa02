package gqlws_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// rawClient is a WebSocket client that writes its frames byte by byte and
// reads the server's one frame at a time, without a WebSocket library in
// between: a library would refuse or repair what the server gets wrong,
// which is exactly what the fuzz test must see.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// rawFrame is one frame as the server sent it.
type rawFrame struct {
	fin     bool
	rsv     byte // the three reserved bits
	opcode  byte
	masked  bool
	payload []byte
}

// dialRaw opens a WebSocket to the http:// URL rawURL offering subprotocol
// proto, checking the server's handshake answer; the connection is closed
// when tb ends.
func dialRaw(tb testing.TB, rawURL, proto string) *rawClient {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = nc.Close() })
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", u.Host, key, proto)
	if err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		tb.Fatalf("handshake answered %s", resp.Status)
	case resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		tb.Fatalf("handshake: wrong Sec-WebSocket-Accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
	case resp.Header.Get("Sec-WebSocket-Protocol") != proto:
		tb.Fatalf("handshake chose subprotocol %q, not %q", resp.Header.Get("Sec-WebSocket-Protocol"), proto)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawClient{nc: nc, br: br}
}

// write sends one unfragmented frame, masked as a client's must be.
func (c *rawClient) write(opcode byte, payload []byte) error {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x5a, 0x17, 0xc3, 0x81}
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// maxRawPayload bounds the frames read: the test's server never sends
// anything near it.
const maxRawPayload = 1 << 20

// read returns the server's next frame, waiting until deadline.
func (c *rawClient) read(deadline time.Time) (rawFrame, error) {
	_ = c.nc.SetReadDeadline(deadline)
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 0x7, opcode: h[0] & 0xf, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return rawFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return rawFrame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > maxRawPayload {
		return rawFrame{}, fmt.Errorf("a frame of %d bytes", n)
	}
	var mask [4]byte
	if f.masked {
		if _, err := io.ReadFull(c.br, mask[:]); err != nil {
			return rawFrame{}, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return rawFrame{}, err
	}
	return f, nil
}

// rfc6455Problem says what is wrong with a frame the server sent, by RFC
// 6455 and by what this server promises beyond it (it never fragments and
// never sends binary frames; the fuzz test negotiates no extension, so no
// reserved bit may be set), or "" when nothing is.
func rfc6455Problem(f rawFrame) string {
	switch {
	case f.masked:
		return "a masked server frame (section 5.1)"
	case f.rsv != 0:
		return fmt.Sprintf("reserved bits %03b set without an extension (section 5.2)", f.rsv)
	case !f.fin:
		return "a fragmented frame"
	case f.opcode >= opClose && len(f.payload) > 125:
		return fmt.Sprintf("a control frame (opcode %#x) of %d bytes: at most 125 (section 5.5)", f.opcode, len(f.payload))
	}
	switch f.opcode {
	case opText:
		if !utf8.Valid(f.payload) {
			return "a text frame that is not valid UTF-8 (section 8.1)"
		}
	case opClose:
		if len(f.payload) == 1 {
			return "a close frame with a one-byte payload (section 5.5.1)"
		}
		if len(f.payload) > 2 && !utf8.Valid(f.payload[2:]) {
			return "a close reason that is not valid UTF-8 (section 5.5.1)"
		}
	case opPing, opPong:
	default:
		return fmt.Sprintf("opcode %#x", f.opcode)
	}
	return ""
}

// closeCode returns a close frame's code and reason (1005, "" when it has
// none).
func closeCode(f rawFrame) (int, string) {
	if len(f.payload) < 2 {
		return 1005, ""
	}
	return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
}

// isClosedErr reports whether err is how reading ends once the server has
// closed the TCP connection (a reset when it closed with unread bytes of
// ours).
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)
}
