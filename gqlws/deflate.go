package gqlws

import (
	"bytes"
	"compress/flate"
	"hash/maphash"
	"io"
	"sync"

	"github.com/gorilla/websocket"
)

// permessage-deflate (RFC 7692), negotiated by gorilla/websocket's upgrader
// without context takeover on either side: every message is compressed on
// its own, so the server keeps no compression state per connection (a
// pooled compressor serves any write) and the same compressed bytes are
// right for every connection.
//
// That lets a shared result be compressed once per event, like it is encoded
// once. A member's frame differs from another's only by its operation id,
// which comes before the result: the frame's deflate data is a stored
// (uncompressed) block holding `{"type":"next","id":"<id>","payload":`,
// followed by the result and the closing brace compressed once for all,
// sync-flushed and cut as RFC 7692 section 7.2.1 says. The compressed part
// only refers back within itself, so it decodes the same after any prefix.
//
// Small messages are sent uncompressed (the extension lets each message
// choose): below compressMin bytes, deflate saves little and costs a
// compressor run per frame.

// compressMin is the smallest payload that is compressed.
const compressMin = 256

// rsv1 marks a compressed message in its first frame's header.
const rsv1 = 0x40

var compressors = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // BestSpeed is a valid level: no error
	return w
}}

// appender is an io.Writer appending to a byte slice.
type appender struct{ b []byte }

// Write appends p; it never fails.
func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// deflateTail is what a sync flush ends with and RFC 7692 has the sender
// remove (the receiver puts it back).
var deflateTail = []byte{0, 0, 0xff, 0xff}

// appendDeflated appends the compressed form of the concatenated parts to
// dst: deflate blocks, sync-flushed, without the final 00 00 ff ff.
func appendDeflated(dst []byte, parts ...[]byte) []byte {
	a := &appender{b: dst}
	w := compressors.Get().(*flate.Writer)
	w.Reset(a)
	for _, p := range parts {
		_, _ = w.Write(p) // the appender never fails
	}
	_ = w.Flush()
	w.Reset(io.Discard) // let go of a
	compressors.Put(w)
	return bytes.TrimSuffix(a.b, deflateTail)
}

// appendStoredHeader appends the header of an uncompressed deflate block
// (not the last) of n bytes, n at most maxStored; the block leaves the
// stream byte-aligned.
func appendStoredHeader(dst []byte, n int) []byte {
	return append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
}

const (
	maxStored    = 1<<16 - 1
	storedHeader = 5 // the bytes appendStoredHeader appends
)

// sharedResult is one result of a group, encoded once and, when some
// member negotiated compression and it is large enough, compressed once.
type sharedResult struct {
	json []byte
	// tail is the deflate data of json and the frame's closing brace (see
	// above); nil: members get the result uncompressed.
	tail []byte
}

// newSharedResult returns the result payload, compressed too when compress
// (some member may have negotiated permessage-deflate) and it is worth it.
func newSharedResult(payload []byte, compress bool) *sharedResult {
	r := &sharedResult{json: payload}
	if compress && len(payload) >= compressMin {
		r.tail = appendDeflated(nil, payload, frameSuffix)
	}
	return r
}

// appendText appends payload to the framer as the connection sends a text
// message: compressed when the connection negotiated it and the payload is
// worth it. It returns the opcode byte to frame it with.
func (c *conn) appendText(f *framer, payload []byte) byte {
	if c.socket.deflate && len(payload) >= compressMin {
		f.buf = appendDeflated(f.buf, payload)
		return opText | rsv1
	}
	f.append(payload)
	return opText
}

// readMessage reads the next message whole, like gorilla's ReadMessage, but
// bounds the message's decompressed size too: the read limit gorilla applies
// counts the compressed bytes on the wire, and a small compressed message
// can inflate a thousandfold.
func (c *conn) readMessage() (int, []byte, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return typ, nil, err
	}
	limit := c.transport.opts.ReadLimit
	if limit <= 0 {
		data, err := io.ReadAll(r)
		return typ, data, err
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(data)) > limit {
		return typ, nil, websocket.ErrReadLimit
	}
	return typ, data, err
}

// tailCache remembers the compressed form of recent results written to
// single connections, so that a result that many connections get one by
// one (a KPI module's new state, a dashboard, a presence list) is
// compressed once, like a group's result. Results above maxCachedTail are
// compressed for each write.
type tailCache struct {
	seed    maphash.Seed
	mu      sync.Mutex
	entries [tailCacheSize]cachedTail
}

// cachedTail is a result (json, with its maphash) and its compressed form.
type cachedTail struct {
	hash uint64
	json []byte
	tail []byte
}

const (
	tailCacheSize = 64
	maxCachedTail = 16 << 10
)

// newTailCache returns an empty cache.
func newTailCache() *tailCache { return &tailCache{seed: maphash.MakeSeed()} }

// tail returns the deflate data of payload and the frame's closing brace,
// as sharedResult.tail.
func (tc *tailCache) tail(payload []byte) []byte {
	if len(payload) > maxCachedTail {
		return appendDeflated(nil, payload, frameSuffix)
	}
	h := maphash.Bytes(tc.seed, payload)
	e := &tc.entries[h%tailCacheSize]
	tc.mu.Lock()
	hit := *e
	tc.mu.Unlock()
	if hit.hash == h && bytes.Equal(hit.json, payload) {
		return hit.tail
	}
	tail := appendDeflated(nil, payload, frameSuffix)
	tc.mu.Lock()
	*e = cachedTail{hash: h, json: payload, tail: tail}
	tc.mu.Unlock()
	return tail
}
