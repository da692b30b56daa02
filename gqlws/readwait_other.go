//go:build !unix

package gqlws

import "syscall"

// waitPeek cannot wait without reading on this platform: the caller reads
// directly instead.
func waitPeek(syscall.RawConn) bool { return false }

// trySendRaw is never called here: waitPeek's platforms are those with raw
// non-blocking writes.
func trySendRaw(syscall.RawConn, []byte) (int, error) { return 0, nil }
