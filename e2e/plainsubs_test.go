package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestPlainSubscribersJoinAtOnce checks that subscriptions without after,
// the way most clients subscribe, join shared delivery as they start: the
// server's goroutines stay at about one per connection at every sample,
// while they subscribe, once they all run and after their first events
// (before, each kept two goroutines of its own until its first event);
// and each receives every status posted after it started, in order and
// once, while several users post at the same time.
func TestPlainSubscribersJoinAtOnce(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0", "LIMIT_CONNS_PER_ADDR": "0", "LIMIT_OPERATIONS": "0"})
	s.logsOnFailure(t)
	var tokens []string
	for i := range 4 {
		tokens = append(tokens, s.signIn(t, fmt.Sprintf("poster %d", i)))
	}
	s.post(t, tokens[0], "before anyone subscribes")
	before := s.metric(t, "go_goroutines")

	const clients = 300
	bound := before + 1.05*clients + 20 // the group's leader and stream, the scrape, the keepalive
	most := before
	sample := func() { most = max(most, s.metric(t, "go_goroutines")) }
	conns := make([]*wsClient, clients)
	for i := range conns {
		proto := "graphql-transport-ws"
		if i%2 == 1 {
			proto = "graphql-ws"
		}
		conns[i] = dialWS(t, s, proto, nil)
		conns[i].init("")
		conns[i].subscribe("s", `subscription { statusPosted { id text createdAt } }`, nil)
		if i%20 == 19 {
			sample()
		}
	}
	waitMetric(t, s, `switchboard_subscriptions{field="statusPosted"}`, clients)
	// Once no operation is still being prepared, every subscription runs.
	deadline := time.Now().Add(10 * time.Second)
	for s.metric(t, "go_goroutines") > before+clients+20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sample()
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves them all")

	// Four users post ten statuses each, at the same time.
	var mu sync.Mutex
	var posted []int
	var wg sync.WaitGroup
	for _, token := range tokens {
		wg.Go(func() {
			for i := range 10 {
				id, err := strconv.Atoi(s.post(t, token, fmt.Sprintf("live %d", i)).ID)
				assert.NoError(t, err)
				mu.Lock()
				posted = append(posted, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(posted)
	sample() // after the first events: frames wait in the sockets, nobody reads yet
	t.Logf("goroutines: %.0f before, at most %.0f with %d plain subscribers (%.3f per connection)", before, most, clients, (most-before)/clients)
	assert.LessOrEqual(t, most, bound, "goroutines per connection at most 1.05 + a constant, at every sample")

	for i, c := range conns {
		wg.Go(func() {
			var got []int
			for range posted {
				id, err := strconv.Atoi(c.nextStatus("s", 10*time.Second).ID)
				assert.NoError(t, err)
				got = append(got, id)
			}
			assert.Equal(t, posted, got, "subscriber %d: every status posted after it started, in order, once", i)
		})
	}
	wg.Wait()
	for _, c := range conns[:10] {
		_, err := c.tryRead(100 * time.Millisecond)
		assert.Error(t, err, "nothing more")
	}
}
