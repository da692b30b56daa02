// Package testenv holds what tests of every package share about their
// environment: how a test that needs a missing service skips, or fails
// under CI.
package testenv

import (
	"os"
	"testing"
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
