package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/resolvers"
)

// TestErrorsOfCallersGoneAreNotCounted: switchboard_errors_total counts the
// errors answered to clients: an operation whose client went away is not
// one, and an internal error is, even a cancellation while the client is
// still there.
func TestErrorsOfCallersGoneAreNotCounted(t *testing.T) {
	m := newMetrics()
	present := m.countErrors(resolvers.ErrorPresenter(slog.New(slog.DiscardHandler)))
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	present(gone, fmt.Errorf("create message: %w", context.Canceled))
	assert.Zero(t, counted(t, m, "UNAVAILABLE"), "a caller gone counted as UNAVAILABLE")
	assert.Zero(t, counted(t, m, "INTERNAL"), "a caller gone counted as INTERNAL")
	present(t.Context(), fmt.Errorf("create message: %w", context.Canceled))
	present(t.Context(), errors.New("boom"))
	assert.Equal(t, 2.0, counted(t, m, "INTERNAL"))
}

// counted is the errors counted with code.
func counted(t *testing.T, m *metrics, code string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.errorsByCode.WithLabelValues(code).Write(&d))
	return d.GetCounter().GetValue()
}
