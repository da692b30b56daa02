// Package testenv holds what tests of every package share about their
// environment: how a test that needs a missing service skips, or fails
// under CI.
package testenv

import (
	"os"
	"testing"
	"time"
)

// RequireService skips the test because a service is missing, or fails it
// when REQUIRE_SERVICES=1 (set by .ci/run, so that CI always exercises it).
func RequireService(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("REQUIRE_SERVICES") == "1" {
		tb.Fatalf("REQUIRE_SERVICES=1 but "+format, args...)
	}
	tb.Skipf(format, args...)
}

// Idle waits until count (a running total, such as a database's statements
// so far) has not moved for 300 ms, at most 5 s, and returns it: the work
// that came before a measurement stays out of it.
func Idle(tb testing.TB, count func() float64) float64 {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last := count()
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		now := count()
		if now == last {
			return now
		}
		last = now
	}
	tb.Fatalf("never idle: %.0f and counting", last)
	return last
}
