package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlowConsumerIsDisconnectedAndResumesWithoutLoss: against the real
// server, a subscriber that stops reading while statuses pour in is
// disconnected (1013, or a dropped connection when even the close frame
// cannot get through), the subscriber beside it keeps receiving every
// status promptly, and the slow one, resuming with after, loses nothing.
func TestSlowConsumerIsDisconnectedAndResumesWithoutLoss(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0", "LOG_LEVEL": "info"}) // one poster floods
	token := s.signIn(t, "poster")
	const sub = `subscription($a: ID) { statusPosted(after: $a) { id text } }`
	fast := dialWS(t, s, "graphql-transport-ws", nil)
	fast.init("")
	fast.subscribe("s", sub, map[string]any{"a": "0"})
	slow := dialTinyReceiveBuffer(t, s)
	slow.init("")
	slow.subscribe("s", sub, map[string]any{"a": "0"})
	first := s.post(t, token, "first")
	require.Equal(t, first.ID, fast.nextStatus("s", 5*time.Second).ID)
	require.Equal(t, first.ID, slow.nextStatus("s", 5*time.Second).ID, "both subscribed")

	// The flood: 10 MB of statuses (500 four-byte characters each): more
	// than the kernel's socket buffers (up to 4 MB with Linux's autotuning)
	// and the 1,024 frames the server queues for a client hold.
	const total = 5000
	got, lags := floodAndFollow(t, s, token, fast, total, strings.Repeat("🛰", 500))
	firstID, _ := strconv.ParseInt(first.ID, 10, 64)
	for i, id := range got {
		require.Equal(t, firstID+int64(i)+1, id, "the fast subscriber: in order, no gap")
	}
	slices.Sort(lags)
	p99 := lags[len(lags)*99/100]
	t.Logf("fast subscriber: %d statuses, ack→receive p50 %s, p99 %s, max %s", len(got), lags[len(lags)/2], p99, lags[len(lags)-1])
	assert.Less(t, p99, 2*time.Second, "the slow one does not hold the fast one up (its write timeout is 10 s)")

	// The slow one reads now: what was buffered, in order, then the end.
	last, rerr := readUntilCutOff(t, slow, firstID)
	require.Less(t, last, firstID+total, "the slow subscriber was cut off")
	// 1013 when the close frame could still be written; a client whose
	// buffers stayed full sees the connection drop (1006). The standard
	// client reconnects after either.
	var ce *websocket.CloseError
	require.True(t, errors.As(rerr, &ce), "the connection ended: %v", rerr)
	assert.Contains(t, []int{websocket.CloseTryAgainLater, websocket.CloseAbnormalClosure}, ce.Code)
	t.Logf("the slow subscriber got %d of %d before being cut off (%v)", last-firstID, total, rerr)
	assert.Positive(t, s.metric(t, `switchboard_slow_consumer_disconnects_total`))

	// Resuming with after, it loses nothing.
	again := dialWS(t, s, "graphql-transport-ws", nil)
	again.init("")
	again.subscribe("s", sub, map[string]any{"a": strconv.FormatInt(last, 10)})
	for want := last + 1; want <= firstID+total; want++ {
		require.Equal(t, strconv.FormatInt(want, 10), again.nextStatus("s", 10*time.Second).ID)
	}
}

// dialTinyReceiveBuffer opens a graphql-transport-ws connection to s whose
// socket takes almost nothing (a 2 KB receive buffer), closed when the test
// ends.
func dialTinyReceiveBuffer(t *testing.T, s *testServer) *wsClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
		}}
		return nd.Dial(network, addr)
	}}
	conn, resp, err := d.Dial(s.WS(), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{tb: t, conn: conn}
}

// floodAndFollow posts total statuses reading text from four posters at
// once while fast (subscribed as "s") reads as many, and requires every
// post to be acknowledged. It returns the ids fast received, in the order
// received, and the time from each status's acknowledgement to its receipt.
//
// At most inFlight statuses are posted and not yet received by fast: the
// lag then measures the server's delivery, not a backlog in the test's own
// reader, which on a loaded machine falls behind four posters. A fast
// subscriber held up behind the slow one (its write timeout is 10 s) still
// shows as seconds of lag.
func floodAndFollow(t *testing.T, s *testServer, token string, fast *wsClient, total int, text string) ([]int64, []time.Duration) {
	t.Helper()
	const inFlight = 64
	window := make(chan struct{}, inFlight)
	var mu sync.Mutex
	acked := map[string]time.Time{}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := p; i < total; i += 4 {
				window <- struct{}{}
				id, ok := postAcked(s, token, text)
				if !ok {
					<-window // nothing will arrive for it
					continue
				}
				mu.Lock()
				acked[id] = time.Now()
				mu.Unlock()
			}
		})
	}
	var lags []time.Duration
	var got []int64
	for len(got) < total {
		st := fast.nextStatus("s", 15*time.Second)
		at := time.Now()
		id, err := strconv.ParseInt(st.ID, 10, 64)
		require.NoError(t, err)
		got = append(got, id)
		select { // a post whose answer was lost may still arrive
		case <-window:
		default:
		}
		mu.Lock()
		if a, ok := acked[st.ID]; ok {
			lags = append(lags, at.Sub(a))
		}
		mu.Unlock()
	}
	wg.Wait()
	require.Len(t, acked, total, "every post acknowledged")
	return got, lags
}

// readUntilCutOff reads slow's statuses until its connection ends,
// requiring each to follow the one before (the first to follow after),
// and returns the last one's id and the error that ended the connection.
func readUntilCutOff(t *testing.T, slow *wsClient, after int64) (int64, error) {
	t.Helper()
	last := after
	for {
		m, err := slow.tryRead(5 * time.Second)
		if err != nil {
			return last, err
		}
		if m.Type != "next" {
			continue
		}
		var p struct {
			Data struct{ StatusPosted status } `json:"data"`
		}
		require.NoError(t, json.Unmarshal(m.Payload, &p))
		id, _ := strconv.ParseInt(p.Data.StatusPosted.ID, 10, 64)
		require.Equal(t, last+1, id, "the slow subscriber: in order, no gap")
		last = id
	}
}
