package e2e

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsCountWhatHappens: the switchboard_* metrics follow real
// traffic: operations timed, frames written, closes by code, limits hit.
func TestMetricsCountWhatHappens(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_MESSAGES": "1"})
	general := s.generalRoom(t)
	alice := s.chatUser(t, "alice")
	ws := s.chatWS(t, alice.token)
	ws.subscribe("s", `subscription { statusPosted { id } }`, nil)
	primed[event](ws, "s", "statusPosted", func() { s.post(t, alice.token, "counted") })
	limitedBefore := s.metric(t, `switchboard_errors_total{code="RATE_LIMITED"}`)
	for range 3 {
		s.do(t, alice.token, `mutation($r: ID!) { postMessage(roomId: $r, text: "x") { id } }`, map[string]any{"r": general.ID})
	}
	assert.Equal(t, limitedBefore+1, s.metric(t, `switchboard_errors_total{code="RATE_LIMITED"}`), "errors answered, by code")
	bad := s.chatWS(t, "")
	bad.send("nonsense", "", nil)
	code, _ := bad.closeCode(5 * time.Second)
	require.Equal(t, 4400, code)

	assert.GreaterOrEqual(t, s.metric(t, `switchboard_operation_duration_seconds_count{type="mutation"}`), 4.0)
	assert.GreaterOrEqual(t, s.metric(t, `switchboard_events_delivered_total`), 1.0)
	// A second subscriber of the same document joins the first's shared
	// execution; the next status is fanned out once and timed.
	before := s.metric(t, `switchboard_delivery_latency_seconds_count`)
	other := s.chatWS(t, alice.token)
	other.subscribe("s", `subscription { statusPosted { id } }`, nil)
	primed[event](other, "s", "statusPosted", func() { s.post(t, alice.token, "shared") })
	assert.Eventually(t, func() bool { return s.metric(t, `switchboard_delivery_latency_seconds_count`) > before },
		5*time.Second, 20*time.Millisecond, "shared deliveries are timed")
	assert.Equal(t, 1.0, s.metric(t, `switchboard_rate_limited_total{limit="messages"}`), "the third message in a burst of two")
	assert.Equal(t, 2.0, s.metric(t, `switchboard_subscriptions{field="statusPosted"}`), "alice's two subscriptions")
	assert.GreaterOrEqual(t, s.metric(t, `switchboard_events_published_total{topic="statuses"}`), 2.0)
	assert.GreaterOrEqual(t, s.metric(t, `switchboard_events_published_total{topic="room"}`), 2.0, "room:N counts as room")
	other.send("complete", "s", nil)
	assert.Eventually(t, func() bool { return s.metric(t, `switchboard_subscriptions{field="statusPosted"}`) == 1 },
		5*time.Second, 20*time.Millisecond, "a completed subscription is no longer counted")
	assert.Equal(t, 1.0, s.metric(t, `switchboard_websocket_closes_total{code="4400"}`))
	// A client's own close code is not a label: clients could mint them.
	gone := s.chatWS(t, "")
	require.NoError(t, gone.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4999, "bye")))
	code, _ = gone.closeCode(5 * time.Second)
	assert.Equal(t, 4999, code, "the close is echoed")
	assert.Equal(t, 1.0, s.metric(t, `switchboard_websocket_closes_total{code="client"}`))
	assert.NotContains(t, s.scrape(t), `code="4999"`, "a client's own close code is no label")
	assert.Eventually(t, func() bool { return s.metric(t, `switchboard_websocket_connections`) == 2 },
		5*time.Second, 20*time.Millisecond, "alice's two connections are open, the refused one is gone")
}
