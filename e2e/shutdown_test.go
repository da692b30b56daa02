package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGracefulShutdownLosesNoAcknowledgedMutation: a server process stopped
// with SIGTERM while clients post: readiness fails, WebSockets close with
// 1001 (the standard client reconnects), the process exits in time, and
// every status a client got an answer for is there after the restart.
func TestGracefulShutdownLosesNoAcknowledgedMutation(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DATA_DIR": dir, "LOG_LEVEL": "info", "LIMIT_MESSAGES": "0", "LIMIT_STATUSES": "0"}
	s := startProcess(t, env)
	token := s.signIn(t, "poster")
	ws := dialWS(t, s, "graphql-transport-ws", nil)
	ws.init("")
	ws.subscribe("s", `subscription { statusPosted { id } }`, nil)

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for p := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if id, ok := postAcked(s, token, fmt.Sprintf("p%d-%d", p, i)); ok {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		})
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 50 }, 30*time.Second, 10*time.Millisecond)

	start := time.Now()
	go s.stop() // SIGTERM
	code, _ := ws.closeCode(10 * time.Second)
	assert.Equal(t, websocket.CloseGoingAway, code, "subscribers are told to reconnect")
	s.stop() // waits for the exit
	took := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d statuses acknowledged; the process stopped %s after SIGTERM", len(acked), took.Round(time.Millisecond))
	assert.Less(t, took, 10*time.Second, "within SHUTDOWN_TIMEOUT")

	again := startProcess(t, env)
	stored := map[string]bool{}
	var after *string
	for {
		var d struct {
			Statuses struct {
				Edges    []struct{ Node event }
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
			}
		}
		again.mustDo(t, "", `query($a: String) { statuses(first: 100, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } }`, map[string]any{"a": after}, &d)
		for _, e := range d.Statuses.Edges {
			stored[e.Node.ID] = true
		}
		if !d.Statuses.PageInfo.HasNextPage {
			break
		}
		after = &d.Statuses.PageInfo.EndCursor
	}
	for _, id := range acked {
		assert.True(t, stored[id], "acknowledged status %s survived the shutdown", id)
	}
}

// TestConnectionChurnLeavesNothingBehind: many clients connect, subscribe
// and vanish abruptly; the server's goroutines and live heap go back to
// where they were.
func TestConnectionChurnLeavesNothingBehind(t *testing.T) {
	// At info, not debug: the test keeps the server's log lines in its heap.
	s := startServer(t, map[string]string{"LOG_LEVEL": "info"})
	general := s.generalRoom(t)
	token := s.signIn(t, "churn")
	// settle collects garbage (twice: pooled buffers survive one cycle) and
	// reports the goroutines and the bytes of live heap objects.
	settle := func() (int, uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	churn := func(n int) {
		for i := range n {
			// Not dialWS: its cleanup would keep every client alive.
			d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, EnableCompression: i%3 == 0}
			conn, resp, err := d.Dial(s.WS(), nil)
			require.NoError(t, err)
			_ = resp.Body.Close()
			c := &wsClient{tb: t, conn: conn}
			c.init(token)
			c.subscribe("s", `subscription { statusPosted { id } }`, nil)
			c.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
			c.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { id } } }`, map[string]any{"r": general.ID})
			c.read(5 * time.Second) // the presence list: the subscriptions run
			if i%2 == 0 {
				_ = c.conn.NetConn().Close() // vanished
			} else {
				_ = c.conn.Close()
			}
		}
	}
	// One round first, so that lazily started parts (hubs, pools, caches)
	// exist.
	churn(20)
	time.Sleep(3 * time.Second) // the presence grace of the last ones
	baseG, baseHeap := settle()
	const n = 400
	churn(n)
	g, heap := settle()
	for deadline := time.Now().Add(15 * time.Second); (g > baseG+2 || heap > baseHeap+256<<10) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		g, heap = settle()
	}
	assert.LessOrEqual(t, g, baseG+2, "goroutines back to the baseline")
	assert.LessOrEqual(t, heap>>10, (baseHeap+256<<10)>>10, "live heap back to the baseline (256 KiB allowed; a leak of 1 KiB per connection is 400)")
	t.Logf("before %d churned connections: %d goroutines, %d KiB of heap; after: %d, %d KiB", n, baseG, baseHeap>>10, g, heap>>10)
}

// postAcked posts a status over HTTP and returns its id when the server
// acknowledged it (a 200 with data); errors of any kind are "not
// acknowledged", never a test failure.
func postAcked(s *testServer, token, text string) (string, bool) {
	body, _ := json.Marshal(map[string]any{"query": `mutation($t: String!) { postStatus(text: $t) { id } }`, "variables": map[string]any{"t": text}})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var r struct {
		Data struct{ PostStatus *event } `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil || r.Data.PostStatus == nil {
		return "", false
	}
	return r.Data.PostStatus.ID, true
}
