//go:build unix

package gqlws

import (
	"errors"
	"syscall"
)

// waitPeek waits until the socket is readable: a one-byte MSG_PEEK (the
// socket is non-blocking) says whether anything is there without taking it;
// when nothing is, RawConn.Read parks on the poller and asks again. EOF and
// errors count as readable: the read that follows reports them.
func waitPeek(raw syscall.RawConn) bool {
	var b [1]byte
	err := raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
	})
	_ = err // a closed socket: the read that follows fails the same way
	return true
}

// writeRaw is fc.raw's write callback for trySend: one write(2) of
// fc.sending on the non-blocking socket, where a full send buffer takes
// nothing (EAGAIN) instead of waiting. Bound once per connection
// (fc.writeFn), it costs a send no closure.
func (fc *frameConn) writeRaw(fd uintptr) bool {
	n, err := syscall.Write(int(fd), fc.sending)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		n, err = 0, nil
	}
	fc.sent, fc.sendErr = max(n, 0), err
	return true
}
