package e2e

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPanicsContainedInTheBackground is TestPanicsContained for the places
// a server reaches off the goroutine of the request concerned, with no
// broker between replicas involved: the pruning of idempotency keys and
// the KPI demo feed (armed before the server starts, which reaches both at
// once; the pruning's next pass is an hour away, so its unit test checks
// that pass), a batch fetch shared by the fields of a room, a typing
// watcher's end, and a connection's writer, which runs only for a client
// that does not take its frames as fast as they come.
func TestPanicsContainedInTheBackground(t *testing.T) {
	in := newInjector("app.prune", "kpi.demo")
	s, alice, bob, general, last := startPanicServer(t, in, map[string]string{"DEMO_FEED": "true"})

	for _, c := range []panicCase{
		{where: "app.prune", atStart: true, trigger: func(*testing.T) {}}, // the server started all the same
		{where: "kpi.demo", atStart: true, trigger: func(t *testing.T) {
			// The step at start panicked; the feed moves on at its next
			// step (every 5 s).
			c := s.chatWS(t, "")
			c.subscribe("k", `subscription { kpiUpdated(module: "finance") { kpis { key value } } }`, nil)
			defer c.conn.Close() // its group must not outlive the case
			var current kpiSet
			c.nextData("k", "kpiUpdated", &current, 5*time.Second)
			moved := until(c, "k", "kpiUpdated", 10*time.Second, func(kpiSet) bool { return true })
			assert.Len(t, moved.KPIs, 4, "a step of the demo feed after its panic")
		}},
		{where: "batch", trigger: func(t *testing.T) {
			// A room read alone reads its fields through the batch
			// loaders (a page of rooms reads them for the page).
			const room = `query($r: ID!) { room(id: $r) { id lastMessage { id } } }`
			vars := map[string]any{"r": general.ID}
			r := s.do(t, alice.token, room, vars)
			require.NotEmpty(t, r.Errors, "the fields the fetch was for")
			assert.Equal(t, "INTERNAL", r.Errors[0].Code())
			assert.NotEmpty(t, r.Errors[0].Extensions["requestId"])
			assert.Empty(t, s.do(t, alice.token, room, vars).Errors, "the next fetch answers")
		}},
		{where: "chat.typing", requestID: true, trigger: func(t *testing.T) {
			vars := map[string]any{"r": general.ID}
			const typing = `subscription($r: ID!) { typing(roomId: $r) { user { name } typing } }`
			setTyping := func(on bool) func() {
				return func() {
					s.mustDo(t, alice.token, `mutation($r: ID!, $on: Boolean!) { setTyping(roomId: $r, typing: $on) }`,
						map[string]any{"r": general.ID, "on": on}, nil)
				}
			}
			c := s.chatWS(t, bob.token)
			c.subscribe("t", typing, vars)
			primed[typingEvent](c, "t", "typing", setTyping(true)) // the watcher runs
			c.send("complete", "t", nil)                           // its end panics
			c.subscribe("t2", typing, vars)
			ev := primed[typingEvent](c, "t2", "typing", func() {})
			assert.True(t, ev.Typing && ev.User.Name == "alice", "a new watcher starts with alice typing: %+v", ev)
			setTyping(false)()
			ev = primed[typingEvent](c, "t2", "typing", func() {})
			assert.False(t, ev.Typing, "and hears her stop")
		}},
		{where: "ws.writer", requestID: true, trigger: func(t *testing.T) { last = writerPanics(t, s, alice.token, last) }},
	} {
		t.Run(c.where, func(t *testing.T) { checkContained(t, s, in, c, alice.token, &last) })
	}
}

// writerPanics has a subscriber that barely reads (a 2 KB receive buffer)
// follow statuses posted after last until the server starts its writer
// (its socket took a frame only in part), which panics: the subscriber
// gets the statuses written so far, in order, then its connection ends
// (4500, or a drop when even the close frame cannot get through), and
// resuming with after it loses nothing. It returns the last status posted.
func writerPanics(t *testing.T, s *testServer, token string, last status) status {
	const sub = `subscription($a: ID) { statusPosted(after: $a) { id text } }`
	slow := dialTinyReceiveBuffer(t, s)
	slow.init("")
	slow.subscribe("s", sub, map[string]any{"a": last.ID})
	first := s.post(t, token, "to a slow reader")
	require.Equal(t, first.ID, slow.nextStatus("s", 5*time.Second).ID, "subscribed")

	big := strings.Repeat("🛰", 500) // 2,000 bytes
	posted := first
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; len(panicLines(s.logs.String(), "ws.writer")) == 0; n++ {
		require.True(t, n < 2000 && time.Now().Before(deadline), "the writer started within 2,000 statuses and 30 s")
		posted = s.post(t, token, big)
	}
	firstID, _ := strconv.ParseInt(first.ID, 10, 64)
	read, err := readUntilCutOff(t, slow, firstID)
	// 4500 when the close frame could still be written; a drop (1006, or
	// a reset when the server's socket closed with bytes unread) when not.
	// The standard client reconnects after each.
	var ce *websocket.CloseError
	ended := errors.Is(err, syscall.ECONNRESET) ||
		errors.As(err, &ce) && (ce.Code == 4500 || ce.Code == websocket.CloseAbnormalClosure)
	require.True(t, ended, "the connection ended: %v", err)
	t.Logf("the slow subscriber read %d statuses and then its connection ended (%v)", read-firstID, err)

	again := s.chatWS(t, "")
	again.subscribe("s", sub, map[string]any{"a": strconv.FormatInt(read, 10)})
	postedID, _ := strconv.ParseInt(posted.ID, 10, 64)
	for want := read + 1; want <= postedID; want++ {
		require.Equal(t, strconv.FormatInt(want, 10), again.nextStatus("s", 10*time.Second).ID, "resumed with after")
	}
	_ = again.conn.Close() // its group would catch keepsServing's status
	return posted
}
