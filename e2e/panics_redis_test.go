package e2e

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// redisPanics is what TestPanicsContainedWithRedis runs on: replicas A and
// B on one MySQL database and the Redis of TEST_REDIS_URL, A through a
// proxy that can stall (to open A's circuit breaker), each with its own
// injector; an admin token, two users, the general room, and a KPI value
// in module "ops" that rises by one at each record.
type redisPanics struct {
	a, b       *testServer
	inA, inB   *injector
	proxy      *faultproxy.Proxy
	admin      string
	alice, bob chatUser
	general    room
	last       status
	cash       float64
}

// TestPanicsContainedWithRedis injects a panic at each place of a server
// with Redis (its broker, the circuit breaker in front of it, the
// followers that cross replicas) and checks what the user concerned sees
// besides what TestPanicsContained checks: a write whose publish panicked
// succeeds, a readiness check whose ping panicked says degraded and the
// circuit closes after its back-off (doubled when the probe panicked),
// events and latest values recorded through one replica still reach the
// other's subscribers, after the follower's back-off when it panicked.
func TestPanicsContainedWithRedis(t *testing.T) {
	f := startRedisPanics(t)
	for _, c := range slices.Concat(f.breakerCases(), f.followerCases()) {
		in := f.inA
		if c.on == f.b {
			in = f.inB
		}
		t.Run(c.where, func(t *testing.T) { checkContained(t, c.on, in, c.panicCase, f.alice.token, &f.last) })
	}
}

// redisCase is a panicCase on one of the replicas.
type redisCase struct {
	on *testServer
	panicCase
}

// statusSub follows the status feed after $a.
const statusSub = `subscription($a: ID) { statusPosted(after: $a) { id text } }`

// breakerCases are the places of A's circuit breaker and its use of
// Redis, and B's resync, which A's breaker sets off.
func (f *redisPanics) breakerCases() []redisCase {
	a, b := f.a, f.b
	return []redisCase{
		{a, panicCase{where: "redis.ping", requestID: true, trigger: func(t *testing.T) {
			assert.Equal(t, "degraded", readiness(t, a), "the ping that panicked failed: A's circuit opened")
			t.Logf("A ready again %s after its ping panicked (the breaker's back-off: 1 s)", f.closedA(t).Round(time.Millisecond))
		}}},
		{a, panicCase{where: "broker.call", requestID: true, trigger: func(t *testing.T) {
			r, h := a.doWith(t, f.alice.token, `mutation($t: String!) { postStatus(text: $t) { id text } }`,
				map[string]any{"t": "its publish panics"}, nil)
			require.Empty(t, r.Errors, "the write succeeds")
			var d struct{ PostStatus status }
			require.NoError(t, json.Unmarshal(r.Data, &d))
			lines := panicLines(a.logs.String(), "broker.call")
			require.Len(t, lines, 1)
			assert.Contains(t, lines[0], "request_id="+h.Get("X-Request-ID"), "the write's own publish panicked")
			c := b.chatWS(t, "")
			c.subscribe("s", statusSub, map[string]any{"a": f.last.ID})
			assert.Equal(t, d.PostStatus.ID, c.nextStatus("s", 10*time.Second).ID, "committed: a subscriber on B gets it")
			f.last = d.PostStatus
			t.Logf("A ready again %s later", f.closedA(t).Round(time.Millisecond))
		}}},
		{a, panicCase{where: "broker.probe", trigger: func(t *testing.T) {
			f.openA(t)
			took := f.closedA(t)
			t.Logf("A's circuit closed %s after it opened, its first probe having panicked", took.Round(time.Millisecond))
			assert.Greater(t, took, 2500*time.Millisecond, "the probe that panicked failed: the next came after a doubled back-off (1 s, then 2 s)")
		}}},
		{b, panicCase{where: "broker.resync", trigger: func(t *testing.T) {
			w := f.watchCash(t, b)
			defer w.conn.Close() // its group must not outlive the case
			f.openA(t)
			cash := f.recordCash(t) // announced nowhere: A's circuit is open
			f.closedA(t)            // A tells every replica to catch up; B's resync panics
			start := time.Now()
			until(w, "k", "kpiUpdated", 10*time.Second, hasCash(cash))
			took := time.Since(start)
			t.Logf("B's watcher caught up %s after A's circuit closed", took.Round(time.Millisecond))
			assert.Greater(t, took, 800*time.Millisecond, "after the resync follower's back-off (1 s)")
		}}},
	}
}

// followerCases are the places of B that follow what is done through A:
// its connection to Redis, the followers of the services, the idle-channel
// sweep.
func (f *redisPanics) followerCases() []redisCase {
	a, b := f.a, f.b
	return []redisCase{
		{b, panicCase{where: "redis.receive", trigger: func(t *testing.T) {
			c := b.chatWS(t, "")
			c.subscribe("s", statusSub, map[string]any{"a": f.last.ID})
			w := f.watchCash(t, b)
			defer w.conn.Close() // its group must not outlive the case
			posted := a.post(t, f.alice.token, "while B's connection to Redis panics")
			assert.Equal(t, posted.ID, c.nextStatus("s", 10*time.Second).ID, "B's subscriber gets the status")
			_ = c.conn.Close() // its group would catch keepsServing's status
			f.last = posted
			waitMetric(t, b, `switchboard_panics_total{where="redis.receive"}`, 1)
			// Latest values have no database poll: they cross replicas
			// through Redis only. The first is there once B's follower has
			// subscribed again (and caught up), the second through Redis.
			until(w, "k", "kpiUpdated", 10*time.Second, hasCash(f.recordCash(t)))
			start := time.Now()
			until(w, "k", "kpiUpdated", 5*time.Second, hasCash(f.recordCash(t)))
			t.Logf("a KPI recorded through A reached B's watcher through Redis again in %s", time.Since(start).Round(time.Millisecond))
		}}},
		{b, panicCase{where: "kpi.follower", trigger: func(t *testing.T) {
			w := f.watchCash(t, b)
			defer w.conn.Close() // its group must not outlive the case
			start := time.Now()
			cash := f.recordCash(t) // B's follower panics on its announcement
			until(w, "k", "kpiUpdated", 10*time.Second, hasCash(cash))
			f.afterBackoff(t, "a KPI recorded through A reached B's watcher", time.Since(start))
		}}},
		{b, panicCase{where: "notify.follower", trigger: func(t *testing.T) {
			// A new notification reaches B's counts through the stream; a
			// read is announced, and B's follower panics on it.
			c := b.chatWS(t, f.bob.token)
			c.subscribe("u", `subscription { unreadCount }`, nil)
			defer c.conn.Close() // its group must not outlive the case
			before := until(c, "u", "unreadCount", 5*time.Second, func(int) bool { return true })
			a.sendNotification(t, f.admin, map[string]any{"userId": f.bob.ID, "title": "sent through A"})
			until(c, "u", "unreadCount", 10*time.Second, func(n int) bool { return n == before+1 })
			start := time.Now()
			a.mustDo(t, f.bob.token, `mutation { markAllNotificationsRead }`, nil, nil)
			until(c, "u", "unreadCount", 10*time.Second, func(n int) bool { return n == 0 })
			f.afterBackoff(t, "bob's read through A reached his unread count on B", time.Since(start))
		}}},
		{b, panicCase{where: "sessions.follower", trigger: func(t *testing.T) {
			carol := a.chatUser(t, "carol")
			c := b.chatWS(t, carol.token)
			start := time.Now()
			a.mustDo(t, carol.token, `mutation { signOut }`, nil, nil)
			code, reason := c.closeCode(10 * time.Second)
			assert.Equal(t, 4403, code, reason)
			took := time.Since(start)
			t.Logf("B closed the signed-out session's WebSocket %s after signOut on A", took.Round(time.Millisecond))
			assert.Less(t, took, 5*time.Second, "within seconds: the database recheck (2 s) goes on meanwhile")
		}}},
		{b, panicCase{where: "chat.follower.presence", trigger: func(t *testing.T) {
			w := b.chatWS(t, f.bob.token) // bob online through B: its own announcement panics
			w.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { name } } }`, map[string]any{"r": f.general.ID})
			until(w, "p", "presence", 5*time.Second, onlineAre("bob"))
			start := time.Now()
			tab := a.chatWS(t, f.alice.token)
			tab.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": f.general.ID})
			until(w, "p", "presence", 15*time.Second, onlineAre("alice", "bob")) // after the back-off, at A's next heartbeat (5 s)
			t.Logf("alice, online through A, was online on B %s later", time.Since(start).Round(time.Millisecond))
			_, _ = w.conn.Close(), tab.conn.Close() // presence and messageAdded are shared groups: none may outlive the case
		}}},
		{b, panicCase{where: "chat.follower.rooms", trigger: func(t *testing.T) {
			w := b.chatWS(t, f.bob.token)
			w.subscribe("r", `subscription { roomsChanged { id } }`, nil)
			defer w.conn.Close() // its group must not outlive the case
			start := time.Now()
			got := primed[room](w, "r", "roomsChanged", func() { a.postMessage(t, f.alice.token, f.general.ID, "through A") })
			assert.Equal(t, f.general.ID, got.ID)
			f.afterBackoff(t, "a message posted through A moved bob's room list on B", time.Since(start))
		}}},
		{b, panicCase{where: "redis.sweep", atStart: true, trigger: func(t *testing.T) {
			waitUntil(t, 20*time.Second, func() bool { return b.metric(t, `switchboard_panics_total{where="redis.sweep"}`) == 1 },
				"the idle-channel sweep's first round (15 s after B started)")
		}}},
	}
}

// startRedisPanics starts the replicas of TestPanicsContainedWithRedis,
// with the idle-channel sweep armed on B (it runs 15 s after the start),
// and its users, room and first status.
func startRedisPanics(t *testing.T) *redisPanics {
	u, err := url.Parse(redistest.URL(t))
	require.NoError(t, err)
	env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "DEMO_FEED": "false",
		"LIMIT_REQUESTS": "0", "LIMIT_STATUSES": "0", "LIMIT_MESSAGES": "0", "LIMIT_SIGNINS": "0",
		"LIMIT_OPERATIONS": "0", "LIMIT_CONNS_PER_USER": "0"}
	f := &redisPanics{inA: newInjector(), inB: newInjector("redis.sweep"), proxy: faultproxy.Start(t, u.Host)}
	direct := u.String()
	u.Host = f.proxy.Addr()
	start := func(redisURL string, in *injector) *testServer {
		vars := maps.Clone(env)
		vars["REDIS_URL"] = redisURL
		s := startServerWith(t, vars, func(c *app.Config) { c.InjectPanic = in.inject })
		s.logsOnFailure(t)
		require.Contains(t, s.logs.String(), "broker=redis")
		return s
	}
	f.a, f.b = start(u.String(), f.inA), start(direct, f.inB)
	f.admin = f.a.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	f.alice, f.bob = f.a.chatUser(t, "alice"), f.a.chatUser(t, "bob")
	f.general = f.a.generalRoom(t)
	f.last = f.a.post(t, f.alice.token, "first")
	return f
}

// openA opens A's circuit: a readiness check while the path to Redis
// stalls times out (the breaker's 250 ms).
func (f *redisPanics) openA(t *testing.T) {
	t.Helper()
	f.proxy.Stall()
	defer f.proxy.Forward()
	require.Equal(t, "degraded", readiness(t, f.a), "A's circuit opened")
}

// closedA waits until A's circuit has closed again, checking its
// readiness as a load balancer would (those checks start the probes), and
// returns how long that took.
func (f *redisPanics) closedA(t *testing.T) time.Duration {
	t.Helper()
	return waitUntil(t, 15*time.Second, func() bool { return readiness(t, f.a) == "ready" }, "A's circuit closes")
}

// recordCash records the next value of ops/cash through A and returns it.
func (f *redisPanics) recordCash(t *testing.T) float64 {
	t.Helper()
	f.cash++
	f.a.recordKPI(t, f.admin, kv("ops", "cash", f.cash))
	return f.cash
}

// watchCash subscribes to module ops on s (operation "k") and reads the
// current set, with the last value recorded (if any).
func (f *redisPanics) watchCash(t *testing.T, s *testServer) *wsClient {
	t.Helper()
	c := s.chatWS(t, "")
	c.subscribe("k", `subscription { kpiUpdated(module: "ops") { kpis { key value } } }`, nil)
	until(c, "k", "kpiUpdated", 5*time.Second, func(k kpiSet) bool { return f.cash == 0 || cashOf(k) == f.cash })
	return c
}

// afterBackoff logs what reached B how long after it was done through A,
// and checks that this waited for the follower's back-off after its panic.
func (f *redisPanics) afterBackoff(t *testing.T, what string, took time.Duration) {
	t.Helper()
	t.Logf("%s %s later", what, took.Round(time.Millisecond))
	assert.Greater(t, took, 800*time.Millisecond, "after the follower's back-off (1 s)")
}

// onlineAre accepts a presence whose users are named want, in any order.
func onlineAre(want ...string) func(presence) bool {
	slices.Sort(want)
	return func(p presence) bool { return slices.Equal(slices.Sorted(slices.Values(names(p.Users))), want) }
}
