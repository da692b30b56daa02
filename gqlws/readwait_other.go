//go:build !unix

package gqlws

import "syscall"

// waitPeek cannot wait without reading on this platform: the caller reads
// directly instead.
func waitPeek(syscall.RawConn) bool { return false }

// writeRaw takes nothing on this platform (trySend is never called where
// waitPeek cannot wait): the caller's flusher writes it all.
func (fc *frameConn) writeRaw(uintptr) bool {
	fc.sent, fc.sendErr = 0, nil
	return true
}
