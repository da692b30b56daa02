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

// trySendRaw makes one write(2) on the non-blocking socket: a full send
// buffer takes nothing (EAGAIN) instead of waiting.
func trySendRaw(raw syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return true
	}); err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		return 0, nil
	}
	return max(n, 0), werr
}
