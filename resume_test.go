package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/store/storetest"
)

// The delivery promise of statusPosted(after): whatever happens to the
// connection, a client that resumes with the last id it saw ends up with
// every status exactly once, in order — while many clients post at once.

func TestResumeUnderConcurrentPosters(t *testing.T) {
	for _, backend := range []string{"sqlite", "mysql"} {
		t.Run(backend, func(t *testing.T) {
			env := map[string]string{}
			if backend == "mysql" {
				env["DATABASE_URL"] = storetest.MySQLURL(t)
			}
			s := startServer(t, env)
			checkResume(t, []*testServer{s}, []*testServer{s}, 6, 40)
		})
	}
}

// TestResumeAcrossProcesses runs two server processes on one MySQL database,
// posting through both, with a resuming subscriber on each: ids are handed
// out in commit order by the database, not by a lock inside one process.
func TestResumeAcrossProcesses(t *testing.T) {
	url := storetest.MySQLURL(t)
	env := map[string]string{"DATABASE_URL": url, "LOG_LEVEL": "info"}
	a := startProcess(t, env)
	b := startProcess(t, env)
	checkResume(t, []*testServer{a, b}, []*testServer{a, b}, 6, 40)
}

// checkResume posts posters×each statuses concurrently, spread over the
// posting servers, while one subscriber per subscribing server disconnects
// and resumes over and over; each must end with every status, in order,
// exactly once.
func checkResume(t *testing.T, posting, subscribing []*testServer, posters, each int) {
	total := posters * each
	token := posting[0].signIn(t, "poster")

	var (
		mu       sync.Mutex
		postedID = map[string]string{} // text → id
	)
	var posts sync.WaitGroup
	for p := range posters {
		s := posting[p%len(posting)]
		posts.Go(func() {
			for i := range each {
				// Pace the posters so that the subscribers spend most of the
				// run following live rather than replaying.
				time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
				text := fmt.Sprintf("p%d-%d", p, i)
				st := s.post(t, token, text)
				mu.Lock()
				postedID[text] = st.ID
				mu.Unlock()
			}
		})
	}

	type result struct {
		got        []status
		reconnects int
		err        error
	}
	results := make([]result, len(subscribing))
	var subs sync.WaitGroup
	for i, s := range subscribing {
		subs.Go(func() {
			got, reconnects, err := resumingSubscriber(s, total, 90*time.Second)
			results[i] = result{got, reconnects, err}
		})
	}
	posts.Wait()
	subs.Wait()

	require.Len(t, postedID, total)
	ids := make([]int, 0, total)
	for _, id := range postedID {
		n, err := strconv.Atoi(id)
		require.NoError(t, err)
		ids = append(ids, n)
	}
	slices.Sort(ids)
	for i, id := range ids {
		require.Equal(t, i+1, id, "ids are handed out without gaps")
	}
	for i, r := range results {
		require.NoError(t, r.err, "subscriber %d", i)
		require.Len(t, r.got, total, "subscriber %d", i)
		for j, st := range r.got {
			require.Equal(t, strconv.Itoa(j+1), st.ID, "subscriber %d, event %d: in order, no gap, no duplicate", i, j)
			require.Equal(t, postedID[st.Text], st.ID, "subscriber %d: the event is the status that was posted", i)
		}
		assert.Greater(t, r.reconnects, 5, "subscriber %d resumed several times", i)
		t.Logf("subscriber %d received %d statuses over %d connections", i, len(r.got), r.reconnects)
	}
}

// resumingSubscriber collects want statuses from s, dropping its connection
// after a random number of events (sometimes cleanly, sometimes abruptly) and
// resuming with the last id it saw. It reports a broken promise as an error.
func resumingSubscriber(s *testServer, want int, limit time.Duration) ([]status, int, error) {
	deadline := time.Now().Add(limit)
	var got []status
	last := "0"
	connections := 0
	for len(got) < want {
		if time.Now().After(deadline) {
			return got, connections, fmt.Errorf("received %d of %d within %s", len(got), want, limit)
		}
		connections++
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
		conn, _, err := d.Dial(s.WS(), nil)
		if err != nil {
			return got, connections, fmt.Errorf("dial: %w", err)
		}
		batch := 1 + rand.IntN(15)
		err = func() error {
			defer conn.Close()
			if err := conn.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
				return err
			}
			if err := conn.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
				"query":     `subscription($a: ID) { statusPosted(after: $a) { ` + statusFields + ` } }`,
				"variables": map[string]any{"a": last},
			}}); err != nil {
				return err
			}
			for n := 0; n < batch && len(got) < want; {
				_ = conn.SetReadDeadline(deadline)
				var m wsMessage
				if err := conn.ReadJSON(&m); err != nil {
					return fmt.Errorf("read after %d events: %w", len(got), err)
				}
				switch m.Type {
				case "connection_ack", "pong":
					continue
				case "ping":
					_ = conn.WriteJSON(map[string]any{"type": "pong"})
					continue
				case "next":
				default:
					return fmt.Errorf("unexpected %s: %s", m.Type, m.Payload)
				}
				var p struct {
					Data struct{ StatusPosted status } `json:"data"`
				}
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					return err
				}
				st := p.Data.StatusPosted
				lastN, _ := strconv.Atoi(last)
				if st.ID != strconv.Itoa(lastN+1) {
					return fmt.Errorf("after %s came %s", last, st.ID)
				}
				got = append(got, st)
				last = st.ID
				n++
			}
			if rand.IntN(2) == 0 {
				_ = conn.WriteJSON(map[string]any{"type": "complete", "id": "1"})
				_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			}
			return nil
		}()
		if err != nil {
			return got, connections, err
		}
	}
	return got, connections, nil
}
