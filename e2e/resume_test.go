package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
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
			env := map[string]string{"LIMIT_STATUSES": "0"} // posters flood on purpose
			if backend == "mysql" {
				env["DATABASE_URL"] = storetest.MySQLURL(t)
			}
			s := startServer(t, env)
			checkResume(t, statusFeed, []*testServer{s}, []*testServer{s}, 6, 40)
		})
	}
}

// TestResumeAcrossProcesses runs two server processes on one MySQL database,
// posting through both, with a resuming subscriber on each: ids are handed
// out in commit order by the database, not by a lock inside one process.
func TestResumeAcrossProcesses(t *testing.T) {
	url := storetest.MySQLURL(t)
	env := map[string]string{"DATABASE_URL": url, "LOG_LEVEL": "info", "LIMIT_STATUSES": "0"} // posters flood on purpose
	a := startProcess(t, env)
	b := startProcess(t, env)
	checkResume(t, statusFeed, []*testServer{a, b}, []*testServer{a, b}, 6, 40)
}

// durableFeed describes a durable stream for checkResume: how to post to
// it and how to follow it with after.
type durableFeed struct {
	// subscription selects `id text` of field, resuming after $a.
	subscription string
	field        string
	vars         map[string]any
	// token signs the subscribers in, when the feed needs it; poster is the
	// token posts are made with (default: a guest's).
	token, poster string
	post          func(tb testing.TB, s *testServer, token, text string) (id string)
	// position reads an event's position in its stream from its id.
	position func(id string) (int, error)
}

var statusFeed = durableFeed{
	subscription: `subscription($a: ID) { statusPosted(after: $a) { id text } }`,
	field:        "statusPosted",
	post:         func(tb testing.TB, s *testServer, token, text string) string { return s.post(tb, token, text).ID },
	position:     strconv.Atoi,
}

// checkResume posts posters×each statuses concurrently, spread over the
// posting servers, while one subscriber per subscribing server disconnects
// and resumes over and over; each must end with every status, in order,
// exactly once.
func checkResume(t *testing.T, feed durableFeed, posting, subscribing []*testServer, posters, each int) {
	total := posters * each
	token := feed.poster
	if token == "" {
		token = posting[0].signIn(t, "poster")
	}

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
				id := feed.post(t, s, token, text)
				mu.Lock()
				postedID[text] = id
				mu.Unlock()
			}
		})
	}

	type result struct {
		got        []event
		reconnects int
		err        error
	}
	results := make([]result, len(subscribing))
	var subs sync.WaitGroup
	for i, s := range subscribing {
		subs.Go(func() {
			got, reconnects, err := resumingSubscriber(s, feed, total, 90*time.Second)
			results[i] = result{got, reconnects, err}
		})
	}
	posts.Wait()
	subs.Wait()

	require.Len(t, postedID, total)
	ids := make([]int, 0, total)
	for _, id := range postedID {
		n, err := feed.position(id)
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
		for j, ev := range r.got {
			n, err := feed.position(ev.ID)
			require.NoError(t, err)
			require.Equal(t, j+1, n, "subscriber %d, event %d: in order, no gap, no duplicate", i, j)
			require.Equal(t, postedID[ev.Text], ev.ID, "subscriber %d: the event is the one that was posted", i)
		}
		assert.Greater(t, r.reconnects, 5, "subscriber %d resumed several times", i)
		t.Logf("subscriber %d received %d events over %d connections", i, len(r.got), r.reconnects)
	}
}

// event is an event of a durable feed.
type event struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// resumingSubscriber collects want events of feed from s, dropping its connection
// after a random number of events (sometimes cleanly, sometimes abruptly) and
// resuming with the last id it saw. It reports a broken promise as an error.
func resumingSubscriber(s *testServer, feed durableFeed, want int, limit time.Duration) ([]event, int, error) {
	deadline := time.Now().Add(limit)
	var got []event
	var last *string
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
			initPayload := map[string]any{}
			if feed.token != "" {
				initPayload["authorization"] = "Bearer " + feed.token
			}
			if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": initPayload}); err != nil {
				return err
			}
			vars := map[string]any{"a": "0"}
			if last != nil {
				vars["a"] = *last
			}
			maps.Copy(vars, feed.vars)
			if err := conn.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
				"query": feed.subscription, "variables": vars,
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
					Data map[string]event `json:"data"`
				}
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					return err
				}
				ev := p.Data[feed.field]
				pos, err := feed.position(ev.ID)
				if err != nil || pos != len(got)+1 {
					return fmt.Errorf("event %d came with id %q", len(got)+1, ev.ID)
				}
				got = append(got, ev)
				last = &ev.ID
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
