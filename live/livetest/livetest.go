// Package livetest helps test live streams inside testing/synctest
// bubbles, where "nothing arrives" is a certainty rather than a timeout.
package livetest

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// Received returns what c delivers once everything else in the bubble has
// settled: the values sent since the last call (a latest-value stream holds
// at most one). It fails the test when c is closed.
func Received[T any](t *testing.T, c <-chan T) []T {
	t.Helper()
	var out []T
	for {
		synctest.Wait()
		select {
		case v, ok := <-c:
			require.True(t, ok, "the channel is closed")
			out = append(out, v)
		default:
			return out
		}
	}
}
