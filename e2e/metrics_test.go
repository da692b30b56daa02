package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metric returns the value of one sample of /metrics (name with labels as
// printed), or -1 when it is absent.
func metric(t *testing.T, s *testServer, sample string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

// TestMetricsCountWhatHappens: the switchboard_* metrics follow real
// traffic: operations timed, frames written, closes by code, limits hit.
func TestMetricsCountWhatHappens(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_MESSAGES": "1"})
	general := s.generalRoom(t)
	alice := s.chatUser(t, "alice")
	ws := s.chatWS(t, alice.token)
	ws.subscribe("s", `subscription { statusPosted { id } }`, nil)
	primed[event](ws, "s", "statusPosted", func() { s.post(t, alice.token, "counted") })
	limitedBefore := max(metric(t, s, `switchboard_errors_total{code="RATE_LIMITED"}`), 0) // process-wide
	for range 3 {
		s.do(t, alice.token, `mutation($r: ID!) { postMessage(roomId: $r, text: "x") { id } }`, map[string]any{"r": general.ID})
	}
	assert.Equal(t, limitedBefore+1, metric(t, s, `switchboard_errors_total{code="RATE_LIMITED"}`), "errors answered, by code")
	bad := s.chatWS(t, "")
	bad.send("nonsense", "", nil)
	code, _ := bad.closeCode(5 * time.Second)
	require.Equal(t, 4400, code)

	assert.GreaterOrEqual(t, metric(t, s, `switchboard_operation_duration_seconds_count{type="mutation"}`), 4.0)
	assert.GreaterOrEqual(t, metric(t, s, `switchboard_events_delivered_total`), 1.0)
	// A second subscriber of the same document joins the first's shared
	// execution; the next status is fanned out once and timed.
	before := metric(t, s, `switchboard_delivery_latency_seconds_count`)
	other := s.chatWS(t, alice.token)
	other.subscribe("s", `subscription { statusPosted { id } }`, nil)
	primed[event](other, "s", "statusPosted", func() { s.post(t, alice.token, "shared") })
	assert.Eventually(t, func() bool { return metric(t, s, `switchboard_delivery_latency_seconds_count`) > before },
		5*time.Second, 20*time.Millisecond, "shared deliveries are timed")
	assert.Equal(t, 1.0, metric(t, s, `switchboard_rate_limited_total{limit="messages"}`), "the third message in a burst of two")
	assert.Equal(t, 2.0, metric(t, s, `switchboard_subscriptions{field="statusPosted"}`), "alice's two subscriptions")
	assert.GreaterOrEqual(t, metric(t, s, `switchboard_events_published_total{topic="statuses"}`), 2.0)
	assert.GreaterOrEqual(t, metric(t, s, `switchboard_events_published_total{topic="room"}`), 2.0, "room:N counts as room")
	other.send("complete", "s", nil)
	assert.Eventually(t, func() bool { return metric(t, s, `switchboard_subscriptions{field="statusPosted"}`) == 1 },
		5*time.Second, 20*time.Millisecond, "a completed subscription is no longer counted")
	assert.Equal(t, 1.0, metric(t, s, `switchboard_websocket_closes_total{code="4400"}`))
	// A client's own close code is not a label: clients could mint them.
	gone := s.chatWS(t, "")
	require.NoError(t, gone.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4999, "bye")))
	code, _ = gone.closeCode(5 * time.Second)
	assert.Equal(t, 4999, code, "the close is echoed")
	assert.Equal(t, 1.0, metric(t, s, `switchboard_websocket_closes_total{code="client"}`))
	assert.Equal(t, -1.0, metric(t, s, `switchboard_websocket_closes_total{code="4999"}`))
	assert.Eventually(t, func() bool { return metric(t, s, `switchboard_websocket_connections`) == 2 },
		5*time.Second, 20*time.Millisecond, "alice's two connections are open, the refused one is gone")
}
