package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSharedDelivery checks that subscribers of the same document, resuming
// from different positions over both protocols, each get exactly their own
// sequence while live delivery is executed once for all of them, without a
// goroutine per subscription.
func TestSharedDelivery(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0"}) // one user posts eight at once
	token := s.signIn(t, "Sam")
	for i := range 3 {
		s.post(t, token, fmt.Sprintf("early %d", i))
	}
	goroutinesBefore := s.metric(t, "go_goroutines")

	const clients = 40
	subs := dialSharedSubscribers(t, s, clients, `subscription($a: ID) { statusPosted(after: $a) { id text } }`)
	// Each has caught up with the history (and joined the group).
	for _, sb := range subs {
		for id := sb.after + 1; id <= 3; id++ {
			assert.Equal(t, strconv.Itoa(id), sb.c.nextStatus("s", 5*time.Second).ID)
		}
	}
	// Idle and caught up, they have joined the group: no goroutine per
	// subscription remains, only each connection's reader.
	idlePerConn := func() float64 { return (s.metric(t, "go_goroutines") - goroutinesBefore) / clients }
	deadline := time.Now().Add(5 * time.Second)
	for idlePerConn() > 1.5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("goroutines per idle subscribed connection: %.2f", idlePerConn())
	assert.LessOrEqual(t, idlePerConn(), 1.5)
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"))

	for i := range 5 {
		s.post(t, token, fmt.Sprintf("live %d", i))
	}
	var wg sync.WaitGroup
	for _, sb := range subs {
		wg.Go(func() {
			for id := 4; id <= 8; id++ {
				st := sb.c.nextStatus("s", 5*time.Second)
				assert.Equal(t, strconv.Itoa(id), st.ID)
				assert.Equal(t, fmt.Sprintf("live %d", id-4), st.Text)
			}
		})
	}
	wg.Wait()

	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every subscriber")
	perConn := (s.metric(t, "go_goroutines") - goroutinesBefore) / clients
	t.Logf("goroutines per subscribed connection: %.2f", perConn)
	assert.LessOrEqual(t, perConn, 1.5)

	// Another selection is another group; a second subscription on a
	// connection adds no goroutine.
	subs[0].c.subscribe("t", `subscription($a: ID) { statusPosted(after: $a) { id createdAt } }`, map[string]any{"a": "7"})
	m := subs[0].c.read(5 * time.Second)
	require.Equal(t, "t", m.ID)
	var p struct {
		Data struct{ StatusPosted map[string]any } `json:"data"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	assert.Contains(t, p.Data.StatusPosted, "createdAt")
	waitMetric(t, s, "switchboard_shared_subscriptions", 2)

	// Leaving ends the groups.
	for _, sb := range subs {
		sb.c.conn.Close()
	}
	waitMetric(t, s, "switchboard_shared_subscriptions", 0)
}

// sharedSubscriber is one of TestSharedDelivery's clients and the position
// its subscription resumes after.
type sharedSubscriber struct {
	c     *wsClient
	after int
}

// dialSharedSubscribers opens n connections to s, alternately speaking
// graphql-transport-ws and graphql-ws, and subscribes each (as "s") to
// query with after set to 0, 1, 2, 3, 0, … in turn.
func dialSharedSubscribers(t *testing.T, s *testServer, n int, query string) []sharedSubscriber {
	t.Helper()
	subs := make([]sharedSubscriber, n)
	for i := range subs {
		proto := "graphql-transport-ws"
		if i%2 == 1 {
			proto = "graphql-ws"
		}
		c := dialWS(t, s, proto, nil)
		c.init("")
		after := i % 4
		c.subscribe("s", query, map[string]any{"a": strconv.Itoa(after)})
		subs[i] = sharedSubscriber{c, after}
	}
	return subs
}
