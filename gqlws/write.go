package gqlws

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The write path. gorilla/websocket is used for the handshake and for
// reading; frames are written by this file, straight to the socket, because
// the fan-out's cost is in its writes: gorilla's writer sets a deadline on
// the socket for every frame, and a write that may block needs a goroutine
// of its own per connection per event (whose stack then grows on each use).
//
// Instead, a frame is first written without blocking (one write syscall on
// the non-blocking socket, see trySend), from whichever goroutine produced
// it: the group that fans an event out writes to every member's socket
// directly. Whatever the socket does not take at once (its send buffer is
// full: the client reads slowly) stays in the connection's pending bytes,
// and a flusher goroutine, started only then, writes it out blocking and
// then drains the queue that frames join meanwhile. So a client that keeps
// up costs no goroutine and no timer per event, and one that does not never
// holds up the others.
//
// Every write holds writeMu, and pending bytes always go out before anything
// else, so frames never interleave. A blocking write is watched by the
// keepalive's watchdog (writingSince), which disconnects a client that stops
// reading with 1013.

// frameHeader returns the header of an unmasked server frame with the given
// opcode and payload length, written at the end of buf, whose length must be
// maxFrameHeader.
func frameHeader(buf []byte, opcode byte, n int) []byte {
	switch {
	case n < 126:
		buf[maxFrameHeader-2] = 0x80 | opcode
		buf[maxFrameHeader-1] = byte(n)
		return buf[maxFrameHeader-2:]
	case n < 1<<16:
		buf[maxFrameHeader-4] = 0x80 | opcode
		buf[maxFrameHeader-3] = 126
		binary.BigEndian.PutUint16(buf[maxFrameHeader-2:], uint16(n))
		return buf[maxFrameHeader-4:]
	default:
		buf[0] = 0x80 | opcode
		buf[1] = 127
		binary.BigEndian.PutUint64(buf[2:], uint64(n))
		return buf
	}
}

const (
	maxFrameHeader = 10
	opText         = websocket.TextMessage
	opClose        = websocket.CloseMessage
)

// scratch holds frame buffers between writes.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// framer assembles one frame in a pooled buffer, leaving room for the
// header in front of the payload.
type framer struct {
	pooled *[]byte // the buffer as the pool holds it
	buf    []byte  // maxFrameHeader bytes of room for the header, then the payload so far
}

// newFramer returns a framer with an empty payload, on a buffer from the
// pool; release gives the buffer back.
func newFramer() framer {
	pooled := scratch.Get().(*[]byte)
	return framer{pooled: pooled, buf: append((*pooled)[:0], make([]byte, maxFrameHeader)...)}
}

// append appends p to the frame's payload.
func (f *framer) append(p []byte) { f.buf = append(f.buf, p...) }

// frame returns the finished frame (valid until release).
func (f *framer) frame(opcode byte) []byte {
	h := frameHeader(f.buf[:maxFrameHeader], opcode, len(f.buf)-maxFrameHeader)
	return f.buf[maxFrameHeader-len(h):]
}

// release returns the buffer to the pool (unless it grew past 64 KiB); the
// framer and its frame must not be used after.
func (f *framer) release() {
	*f.pooled = f.buf
	releaseScratch(f.pooled)
}

// sendLocked writes a whole frame as far as the socket takes it without
// blocking and keeps the rest in c.pending. It reports false once the
// connection is closed or broken. Called with writeMu held.
func (c *conn) sendLocked(frame []byte) bool {
	if c.broken {
		return false
	}
	if len(c.pending) == 0 {
		n, err := c.socket.trySend(frame)
		if err != nil {
			c.broken = true
			c.closeLater(CloseTryAgainLater, reasonSlowConsumer) // the caller may hold a group's lock
			return false
		}
		frame = frame[n:]
	}
	if len(frame) > 0 {
		c.pending = append(c.pending, frame...)
	}
	return true
}

// drainLocked writes the pending bytes, blocking until the client has taken
// them (the watchdog disconnects it when that takes too long). Called with
// writeMu held.
func (c *conn) drainLocked() bool {
	if c.broken {
		return false
	}
	if len(c.pending) == 0 {
		return true
	}
	c.writingSince.Store(time.Now().UnixNano())
	_, err := c.socket.Conn.Write(c.pending)
	c.writingSince.Store(0)
	c.pending = nil
	if err != nil {
		c.broken = true
		c.closeLater(CloseTryAgainLater, reasonSlowConsumer) // writeMu is held
		return false
	}
	return true
}

// writeLocked writes one text frame, blocking until it is sent (for
// callers that may wait: an operation's own goroutine, a message handler).
func (c *conn) writeLocked(payload []byte) bool {
	return c.sendFramed(payload) && c.drainLocked()
}

// writeResult sends one result of op, executed for this connection alone,
// unless ctx (the operation's) has ended. A write that does not finish
// within the write timeout means the client stopped reading: it is
// disconnected with 1013 and resumes with after when it comes back.
func (c *conn) writeResult(ctx context.Context, op *operation, payload []byte) bool {
	r := sharedResult{json: payload}
	if c.socket.deflate && len(payload) >= compressMin {
		// The same result often goes to many connections one by one (a
		// latest-value stream's new state): compressed once for all.
		r.tail = c.transport.tails.tail(payload)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed.Load() || ctx.Err() != nil {
		return false
	}
	c.transport.framesWritten.Add(1)
	return c.writeQueued(queuedFrame{op: op, result: &r}) && c.drainLocked()
}

// queuedFrame is a frame waiting in a connection's queue: one of an
// operation's results, its complete, or its INTERNAL error (its group
// panicked).
type queuedFrame struct {
	op       *operation
	result   *sharedResult // the result, unless complete or failed
	complete bool
	failed   bool
	latest   bool // a latest-value result: a newer one for op replaces it while queued
}

// flushIfPending starts the flusher when bytes are pending and none runs.
func (c *conn) flushIfPending() {
	c.writeMu.Lock()
	pending := len(c.pending) > 0
	c.writeMu.Unlock()
	if !pending {
		return
	}
	c.queueMu.Lock()
	start := !c.flushing
	c.flushing = true
	c.queueMu.Unlock()
	if start {
		go c.flush()
	}
}

// enqueue delivers a group's frame without waiting for the client. When no
// flusher runs and no other write is in progress, the frame is written at
// once (without blocking); otherwise it joins the connection's queue for
// the flusher, or replaces the queued result of its operation when both
// are latest-value results. A client that lets MaxQueue frames pile up is
// disconnected with 1013 (it comes back and resumes with after).
func (c *conn) enqueue(f queuedFrame) { c.enqueueAll([]queuedFrame{f}) }

// enqueueAll delivers fs, frames of operations on this connection in the
// order they go, like enqueue: all in one write when they can be written at
// once, otherwise each joins the queue in turn.
func (c *conn) enqueueAll(fs []queuedFrame) {
	c.queueMu.Lock()
	if c.closed.Load() {
		c.queueMu.Unlock()
		return
	}
	if !c.flushing && c.writeMu.TryLock() {
		c.queueMu.Unlock()
		if len(fs) == 1 {
			c.writeQueued(fs[0])
		} else {
			c.writeAllQueued(fs)
		}
		pending := len(c.pending) > 0
		c.writeMu.Unlock()
		if pending {
			c.flushIfPending()
		}
		return
	}
	for _, f := range fs {
		if f.latest && c.replaceQueued(f) {
			continue
		}
		if len(c.queue) >= c.transport.opts.MaxQueue {
			c.queueMu.Unlock()
			c.closeLater(CloseTryAgainLater, reasonSlowConsumer) // the caller holds a group's lock
			return
		}
		c.queue = append(c.queue, f)
	}
	start := !c.flushing
	c.flushing = true
	c.queueMu.Unlock()
	if start {
		go c.flush()
	}
}

// replaceQueued puts f, a latest-value result, in the place of its
// operation's result still waiting in the queue, if there is one, and
// reports whether it did: the client skips the older state. Called with
// queueMu held.
func (c *conn) replaceQueued(f queuedFrame) bool {
	for i := range c.queue {
		if q := &c.queue[i]; q.op == f.op && q.latest {
			*q = f
			return true
		}
	}
	return false
}

// flush is the connection's flusher: it writes the pending bytes and the
// queued frames, blocking as long as the client needs, until nothing is
// left. A panic closes the connection with 4500.
func (c *conn) flush() {
	defer c.transport.opts.Panics.Recover(c.logContext(), whereWriter, func() {
		c.stopFlushing()
		c.close(CloseInternalError, reasonInternal)
	})
	c.transport.opts.Panics.Point(whereWriter)
	for c.flushBatch() {
	}
}

// flushBatch writes the pending bytes and one batch of queued frames. It
// reports false when nothing is left (or nothing more can be written): the
// flusher is then done.
func (c *conn) flushBatch() bool {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if !c.drainLocked() {
		c.stopFlushing()
		return false
	}
	c.queueMu.Lock()
	batch := c.queue
	if len(batch) == 0 {
		c.flushing = false
		c.queueMu.Unlock()
		return false
	}
	c.queue, c.spareQueue = c.spareQueue[:0], nil
	c.queueMu.Unlock()
	for _, f := range batch {
		if c.closed.Load() || !c.writeQueued(f) || !c.drainLocked() {
			break
		}
	}
	clear(batch)
	c.queueMu.Lock()
	c.spareQueue = batch[:0]
	c.queueMu.Unlock()
	return true
}

// stopFlushing drops the queue of a connection that can no longer be
// written to.
func (c *conn) stopFlushing() {
	c.queueMu.Lock()
	clear(c.queue)
	c.queue = c.queue[:0]
	c.flushing = false
	c.queueMu.Unlock()
}

// writeQueued sends one queued frame without blocking: an operation's
// result is assembled from the group's prepared payload with the
// operation's id spliced in. Called with writeMu held.
func (c *conn) writeQueued(f queuedFrame) bool {
	if f.op.ended.Load() {
		return true
	}
	switch {
	case f.complete:
		return c.sendFramed(completeFrame(f.op.id))
	case f.failed:
		return c.sendFramed(c.internalErrorFrame(f.op.id))
	}
	return c.writeAllQueued([]queuedFrame{f})
}

// writeAllQueued sends the queued results fs, of operations on this
// connection, in one write without blocking (what the socket does not take
// stays pending). Called with writeMu held.
func (c *conn) writeAllQueued(fs []queuedFrame) bool {
	buf := scratch.Get().(*[]byte)
	*buf = (*buf)[:0]
	for _, f := range fs {
		if !f.op.ended.Load() {
			*buf = c.appendResult(*buf, f)
		}
	}
	ok := len(*buf) == 0 || c.sendLocked(*buf)
	releaseScratch(buf)
	return ok
}

// appendResult appends the frame of f, an operation's result, to dst: the
// group's prepared payload with the operation's id spliced in.
func (c *conn) appendResult(dst []byte, f queuedFrame) []byte {
	var header [maxFrameHeader]byte
	head := c.proto.resultHead()
	if n := len(head) + len(f.op.idJSON) + len(payloadInfix); c.socket.deflate && f.result.tail != nil && n <= maxStored {
		// The head, stored as is, then the result compressed once for all.
		dst = append(dst, frameHeader(header[:], opText|rsv1, storedHeader+n+len(f.result.tail))...)
		dst = appendStoredHeader(dst, n)
		dst = append(dst, head...)
		dst = append(dst, f.op.idJSON...)
		dst = append(dst, payloadInfix...)
		return append(dst, f.result.tail...)
	}
	n := len(head) + len(f.op.idJSON) + len(payloadInfix) + len(f.result.json) + len(frameSuffix)
	dst = append(dst, frameHeader(header[:], opText, n)...)
	dst = append(dst, head...)
	dst = append(dst, f.op.idJSON...)
	dst = append(dst, payloadInfix...)
	dst = append(dst, f.result.json...)
	return append(dst, frameSuffix...)
}

// releaseScratch returns a buffer to the pool, unless it grew past 64 KiB.
func releaseScratch(buf *[]byte) {
	if cap(*buf) <= 64<<10 {
		scratch.Put(buf)
	}
}

// sendFramed sends a text frame without blocking: what the socket does not
// take waits in c.pending (for drainLocked, or for the flusher, which
// flushIfPending starts once writeMu is released). Called with writeMu held.
func (c *conn) sendFramed(payload []byte) bool {
	f := newFramer()
	defer f.release()
	return c.sendLocked(f.frame(c.appendText(&f, payload)))
}

// writeExternal is how gorilla's own writes (the pong to a ping frame, the
// close frame after a protocol error) reach the socket: after whatever is
// pending, blocking like any other waiting write.
func (c *conn) writeExternal(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.broken {
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	if !c.drainLocked() {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

// writeClose sends the close frame, its reason cut to what a control frame
// holds (see closeReason). A writer blocked on a client that does
// not read is cut short: the socket's write deadline, a second from now,
// bounds it and this write alike.
func (c *conn) writeClose(code int, reason string) {
	_ = c.socket.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.broken {
		return
	}
	f := newFramer()
	defer f.release()
	f.append(websocket.FormatCloseMessage(code, closeReason(reason)))
	_ = c.sendLocked(f.frame(opClose)) && c.drainLocked()
}
