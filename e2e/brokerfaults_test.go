package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestRedisFrozenUnderWrites: Redis stops answering for 20 s (a stalled
// network path; a redis-server stopped with SIGSTOP) while two replicas take
// 50 writes a second (statuses and chat messages from five users, through
// the shared rate limits). Writes keep their normal latency (p99 under
// 500 ms) and all succeed, readiness says degraded, skipped publishes are
// counted; every subscriber on both replicas, resuming with after or not,
// receives every event in order, once; a KPI recorded during the fault
// reaches the other replica's watcher; and once Redis answers again the
// circuit closes and events go through Redis again.
func TestRedisFrozenUnderWrites(t *testing.T) {
	t.Run("stalled", func(t *testing.T) {
		u, err := url.Parse(redistest.URL(t))
		require.NoError(t, err)
		proxy := faultproxy.Start(t, u.Host)
		u.Host = proxy.Addr()
		checkFrozenRedis(t, u.String(), proxy.Stall, proxy.Forward)
	})
	t.Run("SIGSTOP", func(t *testing.T) {
		redis := redistest.Start(t)
		checkFrozenRedis(t, redis.URL(), redis.Freeze, redis.Thaw)
	})
}

const (
	frozenFor     = 20 * time.Second
	writers       = 5
	writeInterval = 100 * time.Millisecond // per writer: 50 writes a second in all
)

// checkFrozenRedis runs the scenario of TestRedisFrozenUnderWrites on two
// replicas using the Redis at redisURL, which freeze and thaw stop and
// resume.
func checkFrozenRedis(t *testing.T, redisURL string, freeze, thaw func()) {
	sc := startFrozenScenario(t, redisURL)
	replicas := sc.replicas
	w := startWriters(t, replicas, sc.room.ID, sc.feeds)
	waitFor(5 * time.Second) // traffic before the fault

	frozenAt := time.Now()
	w.mark("during")
	freeze()
	firstSkip := waitUntil(t, 5*time.Second, func() bool { return sc.skipped(t, "publish") > 0 }, "a publish is skipped")
	for _, s := range replicas {
		start := time.Now()
		assert.Equal(t, "degraded", readiness(t, s), "readiness says degraded while the circuit is open")
		assert.Less(t, time.Since(start), 500*time.Millisecond, "and answers at once")
	}
	sc.ops.recordKPI(t, sc.ops.admin, kv("finance", "cash", 2)) // announced nowhere: Redis is frozen
	waitFor(frozenFor - time.Since(frozenAt))

	published := make([]float64, len(replicas))
	for i, s := range replicas {
		published[i] = s.metric(t, `switchboard_events_published_total{topic="statuses"}`)
	}
	w.mark("after")
	thaw()
	recovered := waitUntil(t, 15*time.Second, func() bool {
		for i, s := range replicas {
			if s.metric(t, `switchboard_events_published_total{topic="statuses"}`) <= published[i] || readiness(t, s) != "ready" {
				return false
			}
		}
		return true
	}, "every replica publishes through Redis again")
	waitFor(5 * time.Second) // traffic after the fault
	w.stop()

	assert.Equal(t, 2.0, cashOf(until(sc.kpiWatch, "k", "kpiUpdated", 10*time.Second, hasCash(2))),
		"the KPI recorded during the fault reached the other replica's watcher")
	for _, c := range sc.subs {
		c.check(t, w.posted(c.feed))
	}
	checkDelivery(t, w, sc.subs)
	skipped, local := sc.skipped(t, "publish"), sc.skipped(t, "rate_limit")
	assert.Positive(t, local, "the shared rate limits were kept locally, without asking Redis")
	t.Logf("Redis frozen %s: first skipped publish after %s, degraded at once; recovered (both replicas publishing through Redis, ready) %s after it answered again; %.0f publishes and %.0f shared rate-limit checks skipped",
		frozenFor, firstSkip.Round(time.Millisecond), recovered.Round(time.Millisecond), skipped, local)
	checkWrites(t, w)
}

// frozenScenario is what checkFrozenRedis runs on: two replicas (the first
// with operator tokens), a room, subscribers of the status feed and of the
// room's messages on each replica, with and without after, and a watcher
// of the finance KPIs on the second replica.
type frozenScenario struct {
	ops      *opsServer
	replicas []*testServer
	room     room
	feeds    []durableFeed
	subs     []*collector
	kpiWatch *wsClient
}

// startFrozenScenario starts the replicas on a fresh MySQL database and
// the Redis at redisURL, with the shared rate limits on but out of the
// writers' reach, and waits until every subscriber runs and the watcher
// has cash at 1.
func startFrozenScenario(t *testing.T, redisURL string) *frozenScenario {
	env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "REDIS_URL": redisURL,
		"LIMIT_MESSAGES": "1000", "LIMIT_STATUSES": "1000", "LIMIT_REQUESTS": "1000", "LIMIT_CONNS_PER_USER": "0"}
	sc := &frozenScenario{ops: startOpsServer(t, env)}
	sc.replicas = []*testServer{sc.ops.testServer, startServer(t, env)}
	for _, s := range sc.replicas {
		s.logsOnFailure(t)
	}
	poster := sc.ops.chatUser(t, "poster")
	sc.room = sc.ops.createRoom(t, poster.token, "frozen")
	sc.feeds = []durableFeed{statusFeed, messageFeed(sc.room.ID)}
	for _, s := range sc.replicas {
		for _, feed := range sc.feeds {
			sc.subs = append(sc.subs, collect(t, s, poster.token, feed, true), collect(t, s, poster.token, feed, false))
		}
	}
	// The plain subscribers start with what is committed once they run.
	for _, c := range sc.subs {
		if !c.resumed {
			c.waitLive(t, func() { c.feed.post(t, sc.ops.testServer, poster.token, "warm-up") })
		}
	}
	sc.ops.recordKPI(t, sc.ops.admin, kv("finance", "cash", 1))
	sc.kpiWatch = sc.replicas[1].chatWS(t, "")
	sc.kpiWatch.subscribe("k", `subscription { kpiUpdated(module: "finance") { kpis { key value } } }`, nil)
	require.Equal(t, 1.0, cashOf(until(sc.kpiWatch, "k", "kpiUpdated", 10*time.Second, hasCash(1))))
	return sc
}

// skipped returns how many broker calls of op both replicas skipped.
func (sc *frozenScenario) skipped(t *testing.T, op string) float64 {
	return brokerSkipped(t, sc.replicas, op)
}

// brokerSkipped returns how many broker calls of op the replicas' breakers
// skipped.
func brokerSkipped(t *testing.T, replicas []*testServer, op string) float64 {
	n := 0.0
	for _, s := range replicas {
		n += s.metric(t, `switchboard_broker_skipped_total{op="`+op+`"}`)
	}
	return n
}

// checkWrites prints each phase's writes and checks them: all succeeded,
// in their normal time, at the writers' pace.
func checkWrites(t *testing.T, w *writes) {
	for _, phase := range []string{"before", "during", "after"} {
		st := w.stats(phase)
		t.Logf("writes %-6s: %4d (%.1f/s), %d failed, latency p50 %s p99 %s max %s", phase, st.n, st.rate, st.failed,
			st.p50.Round(time.Millisecond), st.p99.Round(time.Millisecond), st.max.Round(time.Millisecond))
		assert.Zero(t, st.failed, "%s the fault: every write succeeds", phase)
		assert.Less(t, st.p99, 500*time.Millisecond, "%s the fault: p99 write latency", phase)
		assert.Less(t, st.max, time.Second, "%s the fault: no write waits out Redis's timeouts", phase)
		assert.Greater(t, st.rate, 40.0, "%s the fault: the writers keep their pace", phase)
	}
}

// waitFor lets the scenario run for d: the length of a phase, not a wait
// for an event.
func waitFor(d time.Duration) { <-time.After(d) }

// waitUntil polls cond every 20 ms until it holds, failing the test after
// limit, and returns how long it took.
func waitUntil(t *testing.T, limit time.Duration, cond func() bool, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		<-time.After(20 * time.Millisecond)
	}
	return time.Since(start)
}

// readiness returns the status /readyz reports.
func readiness(t *testing.T, s *testServer) string {
	t.Helper()
	var ready struct{ Status string }
	getJSON(t, s.URL+"/readyz", &ready)
	return ready.Status
}

type kpiSet struct {
	KPIs []struct {
		Key   string  `json:"key"`
		Value float64 `json:"value"`
	} `json:"kpis"`
}

func cashOf(s kpiSet) float64 {
	for _, k := range s.KPIs {
		if k.Key == "cash" {
			return k.Value
		}
	}
	return -1
}

func hasCash(v float64) func(kpiSet) bool { return func(s kpiSet) bool { return cashOf(s) == v } }

// ---- Writers ----

// writes is the traffic of startWriters: when each write started and
// ended and how it went, and the ids it created per feed.
type writes struct {
	stopped chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	since   map[string]time.Time // when each phase began
	results []writeResult
	ids     map[string][]string  // by feed field
	started map[string]time.Time // by id: when the write that created it started
}

type writeResult struct {
	start, end time.Time
	err        error
}

// startWriters starts the writers: each posts, every writeInterval, a
// status or a message (in turn) to one replica or the other (in turn), as a
// user of its own. The "before" phase starts now; mark starts the others.
func startWriters(t *testing.T, replicas []*testServer, roomID string, feeds []durableFeed) *writes {
	w := &writes{stopped: make(chan struct{}), since: map[string]time.Time{"before": time.Now()},
		ids: map[string][]string{}, started: map[string]time.Time{}}
	for i := range writers {
		u := replicas[0].chatUser(t, fmt.Sprintf("writer%d", i))
		w.wg.Go(func() {
			tick := time.NewTicker(writeInterval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-w.stopped:
					return
				case <-tick.C:
				}
				feed := feeds[n%len(feeds)]
				s := replicas[(i+n)%len(replicas)]
				w.do(s, u.token, feed, roomID, fmt.Sprintf("w%d-%d", i, n))
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

var writeClient = &http.Client{Timeout: 10 * time.Second}

// do makes one write and records it.
func (w *writes) do(s *testServer, token string, feed durableFeed, roomID, text string) {
	query, vars := `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": text}
	if feed.field == "messageAdded" {
		query, vars = `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`, map[string]any{"r": roomID, "t": text}
	}
	start := time.Now()
	id, err := tryWrite(s, token, query, vars)
	end := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.results = append(w.results, writeResult{start: start, end: end, err: err})
	if err == nil {
		w.ids[feed.field] = append(w.ids[feed.field], id)
		w.started[id] = start
	}
}

// tryWrite posts a mutation whose one field answers an id, and returns it
// or what went wrong (it runs off the test's goroutine: it fails nothing).
func tryWrite(s *testServer, token, query string, vars map[string]any) (string, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := writeClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]struct{ ID string } `json:"data"`
		Errors []gqlError                     `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if len(out.Errors) > 0 {
		return "", fmt.Errorf("%s (%s)", out.Errors[0].Message, out.Errors[0].Code())
	}
	for _, v := range out.Data {
		return v.ID, nil
	}
	return "", fmt.Errorf("status %d: no data", resp.StatusCode)
}

// mark starts phase ("during", "after") now.
func (w *writes) mark(phase string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since[phase] = time.Now()
}

// stop ends the writers and waits for them. Only the first call has an
// effect.
func (w *writes) stop() {
	w.mu.Lock()
	select {
	case <-w.stopped:
		w.mu.Unlock()
		return
	default:
		close(w.stopped)
	}
	w.since["stopped"] = time.Now()
	w.mu.Unlock()
	w.wg.Wait()
}

// posted returns the ids of the events the writers created in feed.
func (w *writes) posted(feed durableFeed) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids[feed.field])
}

type phaseStats struct {
	n, failed     int
	rate          float64 // writes a second
	p50, p99, max time.Duration
}

// stats sums up the writes of phase: those that ended before the fault,
// those under way at some time during it, those that started after it.
func (w *writes) stats(phase string) phaseStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	var st phaseStats
	var lat []time.Duration
	during, after := w.since["during"], w.since["after"]
	for _, r := range w.results {
		in := map[string]bool{
			"before": r.end.Before(during),
			"during": !r.end.Before(during) && r.start.Before(after),
			"after":  !r.start.Before(after),
		}[phase]
		if !in {
			continue
		}
		st.n++
		if r.err != nil {
			st.failed++
		}
		lat = append(lat, r.end.Sub(r.start))
	}
	if len(lat) == 0 {
		return st
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	st.p50, st.p99, st.max = at(0.50), at(0.99), lat[len(lat)-1]
	next := map[string]string{"before": "during", "during": "after", "after": "stopped"}[phase]
	st.rate = float64(st.n) / w.since[next].Sub(w.since[phase]).Seconds()
	return st
}

// checkDelivery prints, for each phase, how long the writers' events took
// from the start of their write to each subscriber, and checks that while
// Redis was frozen they still arrived within the database poll's reach.
// (The last events before the fault may already be in Redis when it
// freezes: they come by the poll too, so "before" has a tail of a second.)
func checkDelivery(t *testing.T, w *writes, subs []*collector) {
	t.Helper()
	delays := map[string][]time.Duration{}
	w.mu.Lock()
	during, after := w.since["during"], w.since["after"]
	for _, c := range subs {
		c.mu.Lock()
		for id, at := range c.at {
			start, ok := w.started[id]
			if !ok {
				continue
			}
			phase := "during"
			switch {
			case start.Before(during):
				phase = "before"
			case !start.Before(after):
				phase = "after"
			}
			delays[phase] = append(delays[phase], at.Sub(start))
		}
		c.mu.Unlock()
	}
	w.mu.Unlock()
	for _, phase := range []string{"before", "during", "after"} {
		d := delays[phase]
		require.NotEmpty(t, d, phase)
		slices.Sort(d)
		p := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Millisecond) }
		t.Logf("delivery %-6s: %5d deliveries, write start to subscriber p50 %s p99 %s max %s", phase, len(d), p(0.5), p(0.99), p(1))
	}
	frozen := delays["during"]
	assert.Less(t, frozen[len(frozen)*99/100], 2*time.Second, "while Redis is frozen, the database poll delivers within a second or so")
}

// ---- Subscribers ----

// collector is one subscriber of a durable feed on one replica, reading on
// a goroutine of its own: the ids it received, in order.
type collector struct {
	feed    durableFeed
	resumed bool // subscribed with after: "0"
	ws      *wsClient
	where   string

	mu   sync.Mutex
	ids  []string
	at   map[string]time.Time // when each event arrived
	err  error
	more chan struct{} // signalled at each event
}

// collect subscribes to feed on s as token's user, with after: "0" when
// resumed (every event of the feed) or without after (the events committed
// once it runs).
func collect(t *testing.T, s *testServer, token string, feed durableFeed, resumed bool) *collector {
	c := &collector{feed: feed, resumed: resumed, ws: s.chatWS(t, token), at: map[string]time.Time{}, more: make(chan struct{}, 1)}
	c.where = fmt.Sprintf("%s on %s (after: %v)", feed.field, s.URL, resumed)
	query := feed.subscription
	vars := map[string]any{}
	for k, v := range feed.vars {
		vars[k] = v
	}
	if resumed {
		vars["a"] = "0"
	} else {
		query = strings.NewReplacer("(after: $a)", "", ", after: $a", "", "($a: ID)", "", ", $a: ID", "").Replace(query)
	}
	c.ws.subscribe("1", query, vars)
	go c.read()
	return c
}

// read records the events until the connection ends (when the test does).
func (c *collector) read() {
	for {
		m, err := c.ws.tryRead(time.Hour)
		if err != nil {
			return
		}
		var p struct {
			Data map[string]event `json:"data"`
		}
		if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("unexpected %s: %s", m.Type, m.Payload)
			c.mu.Unlock()
			continue
		}
		id := p.Data[c.feed.field].ID
		c.mu.Lock()
		c.ids = append(c.ids, id)
		if _, seen := c.at[id]; !seen {
			c.at[id] = time.Now()
		}
		c.mu.Unlock()
		select {
		case c.more <- struct{}{}:
		default:
		}
	}
}

func (c *collector) received() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids), c.err
}

// waitLive calls post every 100 ms until the subscriber receives an event.
func (c *collector) waitLive(t *testing.T, post func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ids, _ := c.received(); len(ids) > 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s: no event within 10 s", c.where)
		post()
		select {
		case <-c.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check waits (up to 15 s) for the writers' events, then checks that the
// subscriber received its feed's events in order, each once, with no gap:
// from the first when it resumed, from the first it received otherwise, to
// the last posted; among them every one the writers posted.
func (c *collector) check(t *testing.T, posted []string) {
	t.Helper()
	require.NotEmpty(t, posted)
	last, err := c.feed.position(slices.MaxFunc(posted, func(x, y string) int {
		px, _ := c.feed.position(x)
		py, _ := c.feed.position(y)
		return px - py
	}))
	require.NoError(t, err)
	var ids []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		ids, err = c.received()
		require.NoError(t, err, c.where)
		if n := len(ids); n > 0 {
			if p, _ := c.feed.position(ids[n-1]); p >= last {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "%s: %d events, not up to %d within 15 s", c.where, len(ids), last)
		select {
		case <-c.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
	first, err := c.feed.position(ids[0])
	require.NoError(t, err)
	if c.resumed {
		assert.Equal(t, 1, first, "%s starts with the feed's first event", c.where)
	}
	for i, id := range ids {
		p, err := c.feed.position(id)
		require.NoError(t, err)
		require.Equal(t, first+i, p, "%s: event %d in order, no gap, no duplicate", c.where, i)
	}
	got := map[string]bool{}
	for _, id := range ids {
		got[id] = true
	}
	for _, id := range posted {
		require.True(t, got[id], "%s received %s", c.where, id)
	}
	t.Logf("%s: %d events in order", c.where, len(ids))
}
