package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// Several replicas on one MySQL database and one Redis: what is done through
// one reaches the subscribers of the others.

// TestReplicasShareLiveDelivery: latest-value streams have no database
// poll behind them, so they cross replicas only through the broker.
func TestReplicasShareLiveDelivery(t *testing.T) {
	a, replicas := startReplicas(t, 2, redistest.URL(t))
	b := replicas[1]
	alice := a.chatUser(t, "alice")

	// KPIs recorded through A reach a kpiUpdated subscriber on B.
	ws := b.chatWS(t, alice.token)
	ws.subscribe("k", `subscription { kpiUpdated(module: "finance") { module kpis { key value } } }`, nil)
	type set struct {
		KPIs []kpiValue `json:"kpis"`
	}
	first := until(ws, "k", "kpiUpdated", 5*time.Second, func(set) bool { return true })
	assert.Empty(t, first.KPIs)
	require.Empty(t, a.record(t, a.admin, kv("finance", "revenue", 42)).Errors)
	got := until(ws, "k", "kpiUpdated", 5*time.Second, func(s set) bool { return len(s.KPIs) == 1 })
	assert.Equal(t, 42.0, got.KPIs[0].Value)

	// A notification sent through A moves alice's badge on B.
	ws.subscribe("u", `subscription { unreadCount }`, nil)
	assert.Equal(t, 0, until(ws, "u", "unreadCount", 5*time.Second, func(int) bool { return true }))
	a.send(t, &alice, "hello from A")
	assert.Equal(t, 1, until(ws, "u", "unreadCount", 5*time.Second, func(n int) bool { return n == 1 }))

	// A chat message posted through A reaches a messageAdded subscriber on B.
	general := a.generalRoom(t)
	ws.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id text } }`, map[string]any{"r": general.ID})
	msg := primed[event](ws, "m", "messageAdded", func() { a.postMessage(t, alice.token, general.ID, "ping") })
	assert.Equal(t, "ping", msg.Text)

	// Bob, on B, sees alice typing through A, and the end when she sends.
	bob := a.chatUser(t, "bob")
	bws := b.chatWS(t, bob.token)
	bws.subscribe("t", `subscription($r: ID!) { typing(roomId: $r) { user { name } typing } }`, map[string]any{"r": general.ID})
	setTyping := func() {
		a.mustDo(t, alice.token, `mutation($r: ID!) { setTyping(roomId: $r, typing: true) }`, map[string]any{"r": general.ID}, nil)
	}
	ev := primed[typingEvent](bws, "t", "typing", setTyping)
	assert.Equal(t, "alice", ev.User.Name)
	assert.True(t, ev.Typing)
	a.postMessage(t, alice.token, general.ID, "sent")
	until(bws, "t", "typing", 5*time.Second, func(e typingEvent) bool { return !e.Typing })

	// Bob's room list on B follows a direct room alice opens through A.
	bws.subscribe("r", `subscription { roomsChanged { `+roomFields+` } }`, nil)
	primed[room](bws, "r", "roomsChanged", func() {
		b.mustDo(t, bob.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
	})
	direct := a.openDirect(t, alice.token, bob.ID)
	got2 := until(bws, "r", "roomsChanged", 5*time.Second, func(r room) bool { return r.ID == direct.ID })
	assert.Equal(t, "alice", got2.Name)
}

// TestReplicasSurviveRedisOutage: with Redis killed in the middle of
// traffic, statuses still commit, subscribers on every replica receive every
// one in order (from the database while Redis is away), and once it is back
// live delivery resumes through the broker.
func TestReplicasSurviveRedisOutage(t *testing.T) {
	redis := redistest.Start(t)
	a, replicas := startReplicas(t, 2, redis.URL())
	token := a.signIn(t, "poster")
	// Subscribed from the start of the stream: nothing can be missed
	// because a subscription started late.
	subs := make([]*wsClient, len(replicas))
	for i, s := range replicas {
		subs[i] = s.chatWS(t, "")
		subs[i].subscribe("s", `subscription { statusPosted(after: "0") { id text } }`, nil)
	}
	var ids []string
	post := func(text string) {
		ids = append(ids, a.post(t, token, text).ID)
	}
	// Traffic before, during and after the outage.
	for i := range 5 {
		post("before " + string(rune('a'+i)))
	}
	redis.Stop()
	var ready struct{ Status, Broker string }
	require.Eventually(t, func() bool {
		getJSON(t, a.URL+"/readyz", &ready)
		return ready.Broker == "down"
	}, 10*time.Second, 100*time.Millisecond, "readiness reports the outage")
	assert.Equal(t, "degraded", ready.Status)
	for i := range 5 {
		post("during " + string(rune('a'+i)))
	}
	redis.Start()
	require.Eventually(t, func() bool {
		getJSON(t, a.URL+"/readyz", &ready)
		return ready.Broker == "up"
	}, 10*time.Second, 100*time.Millisecond, "readiness sees Redis back")
	for i := range 5 {
		post("after " + string(rune('a'+i)))
	}
	for i, c := range subs {
		for j, want := range ids {
			var got event
			c.nextData("s", "statusPosted", &got, 10*time.Second)
			require.Equal(t, want, got.ID, "replica %d, status %d: every status, in order, once", i, j)
		}
	}
}

// TestPresenceAcrossReplicas: a user online through one replica is online
// for watchers on the others, goes offline there when their last connection
// closes, and a replica that stops takes its users with it.
func TestPresenceAcrossReplicas(t *testing.T) {
	a, replicas := startReplicas(t, 2, redistest.URL(t))
	b := replicas[1]
	general := a.generalRoom(t)
	alice, bob := a.chatUser(t, "alice"), a.chatUser(t, "bob")
	watcher := b.chatWS(t, bob.token)
	watcher.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { name } } }`, map[string]any{"r": general.ID})
	is := func(want ...string) func(presence) bool {
		return func(p presence) bool { return slices.Equal(names(p.Users), want) }
	}
	until(watcher, "p", "presence", 5*time.Second, is("bob"))

	tab := a.chatWS(t, alice.token)
	tab.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
	until(watcher, "p", "presence", 5*time.Second, is("bob", "alice"))

	start := time.Now()
	_ = tab.conn.Close()
	until(watcher, "p", "presence", 10*time.Second, is("bob"))
	t.Logf("offline on the other replica %s after the last tab closed", time.Since(start).Round(10*time.Millisecond))

	// A replica that stops takes its users offline everywhere at once.
	again := a.chatWS(t, alice.token)
	again.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
	until(watcher, "p", "presence", 5*time.Second, is("bob", "alice"))
	start = time.Now()
	a.stop()
	until(watcher, "p", "presence", 10*time.Second, is("bob"))
	t.Logf("offline on the other replica %s after its replica stopped", time.Since(start).Round(10*time.Millisecond))
}

// TestReplicasResumeUnderConcurrentPosters: posters on both replicas,
// subscribers on both resuming over and over, the broker in between: each
// ends with the full ordered set, statuses and a chat room alike.
func TestReplicasResumeUnderConcurrentPosters(t *testing.T) {
	for _, backend := range []store.Dialect{store.MySQL, store.Postgres} {
		t.Run(string(backend), func(t *testing.T) {
			a, replicas := startReplicasOn(t, 2, redistest.URL(t), storetest.URL(t, backend))
			checkResume(t, statusFeed, replicas, replicas, 4, 30)
			r := a.createRoom(t, a.signIn(t, "owner"), "busy")
			checkResume(t, messageFeed(r.ID), replicas, replicas, 4, 30)
		})
	}
}

// TestReplicasStartTogether: replicas started at the same moment on an
// empty database (MySQL, PostgreSQL) migrate one after the other and all
// come up.
func TestReplicasStartTogether(t *testing.T) {
	for _, backend := range []store.Dialect{store.MySQL, store.Postgres} {
		t.Run(string(backend), func(t *testing.T) {
			env := withDatabase(t, backend, map[string]string{"LOG_LEVEL": "info"})
			servers := make([]*testServer, 3)
			var wg sync.WaitGroup
			for i := range servers {
				wg.Go(func() { servers[i] = startProcess(t, env) })
			}
			wg.Wait()
			token := servers[0].signIn(t, "first")
			for i, s := range servers {
				st := s.post(t, token, fmt.Sprintf("from %d", i))
				assert.Equal(t, strconv.Itoa(i+1), st.ID, "one schema, one stream")
			}
			assert.Len(t, servers[2].generalRoomsNamed(t), 1, "one general room, however many replicas created the schema")
		})
	}
}

// TestRedisConnectionsStayBounded: however many clients and topics a
// replica serves, it holds a handful of Redis connections (a small publish
// pool and one subscription connection), never one per client.
func TestRedisConnectionsStayBounded(t *testing.T) {
	redis := redistest.Start(t)
	a, _ := startReplicas(t, 1, redis.URL())
	token := a.signIn(t, "owner")
	var rooms []string
	for i := range 20 {
		rooms = append(rooms, a.createRoom(t, token, fmt.Sprintf("room-%d", i)).ID)
	}
	clients := make([]*wsClient, 60)
	for i := range clients {
		c := a.chatWS(t, token)
		c.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": rooms[i%len(rooms)]})
		c.subscribe("s", `subscription { statusPosted { id } }`, nil)
		clients[i] = c
	}
	// Every subscription runs once the last room's first message reaches it.
	for i, c := range clients {
		primed[event](c, "m", "messageAdded", func() { a.postMessage(t, token, rooms[i%len(rooms)], "hello") })
	}
	conns := redis.Clients(t)
	t.Logf("60 clients on 21 topics: the replica holds %d Redis connections", conns)
	assert.LessOrEqual(t, conns, 9, "the publish pool (8) and one subscription connection")
	assert.GreaterOrEqual(t, conns, 2, "it does use Redis")
}

// TestPerUserLimitsAreSharedByReplicas: with Redis, a user's statuses
// budget is one across replicas, not one per replica; while Redis is down,
// each replica limits on its own instead of refusing or stalling.
func TestPerUserLimitsAreSharedByReplicas(t *testing.T) {
	forEachRedis(t, perUserLimitsShared)
}

// sharedRedis is a Redis of a test's own, which it may stop: one server,
// or a cluster.
type sharedRedis interface {
	URL() string
	Stop()
}

// forEachRedis runs test on a private Redis server and on a private Redis
// Cluster of three masters (keys on every shard).
func forEachRedis(t *testing.T, test func(t *testing.T, redis sharedRedis)) {
	t.Run("redis", func(t *testing.T) { test(t, redistest.Start(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, redistest.StartCluster(t, 3, 0)) })
}

func perUserLimitsShared(t *testing.T, redis sharedRedis) {
	// One status every 5 s, bursts of 1: nothing refills during the test.
	env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "REDIS_URL": redis.URL(), "LIMIT_STATUSES": "0.2", "LIMIT_ROOMS": "2"}
	a := startServer(t, env)
	b := startServer(t, env)
	token := a.signIn(t, "poster")
	outcome := func(s *testServer, query string, vars map[string]any) string {
		r := s.do(t, token, query, vars)
		if len(r.Errors) == 0 {
			return "ok"
		}
		return r.Errors[0].Code()
	}
	code := func(s *testServer, text string) string {
		return outcome(s, `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": text})
	}
	// One through A spends the budget; B knows.
	assert.Equal(t, "ok", code(a, "1 via A"))
	assert.Equal(t, "RATE_LIMITED", code(b, "2 via B"), "the budget is shared")
	assert.Equal(t, "RATE_LIMITED", code(a, "3 via A"))
	other := b.signIn(t, "other")
	r := b.do(t, other, `mutation { postStatus(text: "someone else") { id } }`, nil)
	assert.Empty(t, r.Errors, "another user has their own budget")
	// Rooms (2 an hour) too: two through either replica, then none.
	room := func(s *testServer, name string) string {
		return outcome(s, `mutation($n: String!) { createRoom(name: $n) { id } }`, map[string]any{"n": name})
	}
	assert.Equal(t, []string{"ok", "ok", "RATE_LIMITED"}, []string{room(a, "r1"), room(b, "r2"), room(a, "r3")}, "the room budget is shared")

	// Redis down: each replica decides alone, promptly.
	redis.Stop()
	start := time.Now()
	assert.Equal(t, "ok", code(b, "4 via B, alone"))
	assert.Equal(t, "RATE_LIMITED", code(b, "5 via B, alone"))
	assert.Less(t, time.Since(start), 3*time.Second, "no stall while Redis is down")
	assert.Positive(t, b.metric(t, `switchboard_broker_errors_total{op="rate_limit"}`))

	var feed struct {
		Statuses struct {
			Edges []struct{ Node struct{ Text string } }
		}
	}
	a.mustDo(t, "", `{ statuses(first: 20) { edges { node { text } } } }`, nil, &feed)
	var texts []string
	for _, e := range feed.Statuses.Edges {
		texts = append(texts, e.Node.Text)
	}
	assert.ElementsMatch(t, []string{"4 via B, alone", "someone else", "1 via A"}, texts, "only the accepted posts are stored")
}

// TestServerStartsAndServesWhileRedisIsDown: Redis down at start is not
// fatal. The server reports degraded readiness, a subscription resuming
// with after gets every status (from the database), live KPIs keep flowing
// on this replica, and once Redis is back the broker carries them again.
func TestServerStartsAndServesWhileRedisIsDown(t *testing.T) {
	redis := redistest.Start(t)
	redis.Stop()
	dataDir := t.TempDir()
	s := startServer(t, map[string]string{"DATA_DIR": dataDir, "REDIS_URL": redis.URL(), "LIMIT_STATUSES": "0", "DEMO_FEED": "false"})
	admin := s.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	resp, err := http.Get(s.URL + "/readyz")
	require.NoError(t, err)
	var ready map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ready))
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "degraded", ready["status"])

	token := s.signIn(t, "poster")
	first := s.post(t, token, "before anyone listens")
	ws := s.chatWS(t, "")
	ws.subscribe("s", `subscription { statusPosted(after: "0") { id text } }`, nil)
	assert.Equal(t, first.ID, ws.nextStatus("s", 5*time.Second).ID, "replayed from the database")
	during := s.post(t, token, "during the outage")
	assert.Equal(t, during.ID, ws.nextStatus("s", 5*time.Second).ID, "live, from the database's poll")

	redis.Start()
	var after status
	require.Eventually(t, func() bool {
		after = s.post(t, token, "Redis is back")
		got := ws.nextStatus("s", 5*time.Second)
		return got.ID == after.ID
	}, 20*time.Second, 100*time.Millisecond)
	s.recordKPI(t, admin, map[string]any{"module": "finance", "key": "cash", "value": 1})
	kpis := s.chatWS(t, "")
	kpis.subscribe("k", `subscription { kpiUpdated(module: "finance") { kpis { key value } } }`, nil)
	kpis.read(5 * time.Second) // the snapshot
	s.recordKPI(t, admin, map[string]any{"module": "finance", "key": "cash", "value": 2})
	m := kpis.read(5 * time.Second)
	assert.Contains(t, string(m.Payload), `"value":2`, "a change announced through Redis reaches the watcher")
}

// TestUnreadCountsStayRightAcrossReplicas: users watch their unread count
// in a tab on each of two replicas while an admin broadcasts and sends to
// each of them through both, and they read one or all through either, all
// at once. When it settles, every tab shows the count the database has.
func TestUnreadCountsStayRightAcrossReplicas(t *testing.T) {
	a, replicas := startReplicas(t, 2, redistest.URL(t))
	var users []chatUser
	var tabs []*wsClient
	for i := range 4 {
		u := a.chatUser(t, fmt.Sprint("reader ", i))
		users = append(users, u)
		for _, r := range replicas {
			c := r.chatWS(t, u.token)
			c.subscribe("u", `subscription { unreadCount }`, nil)
			until(c, "u", "unreadCount", 5*time.Second, func(int) bool { return true })
			tabs = append(tabs, c)
		}
	}
	const (
		send     = `mutation($in: NotificationInput!) { sendNotification(input: $in) { id } }`
		markOne  = `mutation($id: ID!) { markNotificationRead(id: $id) { id } }`
		markAll  = `mutation { markAllNotificationsRead }`
		newest   = `{ notifications(first: 3, unreadOnly: true) { edges { node { id } } } }`
		rounds   = 25
		inFlight = 4
	)
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Go(func() {
			for i := range rounds {
				r, u := replicas[(w+i)%2], users[(w*7+i)%len(users)]
				var res gqlResponse
				switch w {
				case 0:
					res = r.do(t, a.admin, send, map[string]any{"in": map[string]any{"title": fmt.Sprint("everyone ", i)}})
				case 1:
					res = r.do(t, a.admin, send, map[string]any{"in": map[string]any{"title": fmt.Sprint("one ", i), "userId": u.ID}})
				case 2:
					var d struct {
						Notifications struct {
							Edges []struct{ Node struct{ ID string } }
						}
					}
					if res = r.do(t, u.token, newest, nil); len(res.Errors) == 0 && json.Unmarshal(res.Data, &d) == nil && len(d.Notifications.Edges) > 0 {
						res = r.do(t, u.token, markOne, map[string]any{"id": d.Notifications.Edges[0].Node.ID})
					}
				case 3:
					if i%5 == 0 {
						res = r.do(t, u.token, markAll, nil)
					}
				}
				assert.Empty(t, res.Errors, "writer %d, round %d", w, i)
			}
		})
	}
	wg.Wait()
	for i, c := range tabs {
		u := users[i/len(replicas)]
		var d struct{ UnreadCount int }
		a.mustDo(t, u.token, `{ unreadCount }`, nil, &d)
		got := until(c, "u", "unreadCount", 10*time.Second, func(n int) bool { return n == d.UnreadCount })
		assert.Equal(t, d.UnreadCount, got, "%s's tab on replica %d", u.Name, i%len(replicas))
	}
}

// TestPersistedQueriesAreSharedByReplicas: a document registered with its
// hash (automatic persisted queries) on one replica is known to the
// others through Redis, so a client's hash-only request that reaches
// another replica runs without being asked for the document again. With
// Redis down, each replica answers from its own cache, and a hash it has
// not seen is PERSISTED_QUERY_NOT_FOUND (the client sends the document),
// promptly.
func TestPersistedQueriesAreSharedByReplicas(t *testing.T) {
	forEachRedis(t, persistedQueriesShared)
}

func persistedQueriesShared(t *testing.T, redis sharedRedis) {
	env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "REDIS_URL": redis.URL(), "DEMO_FEED": "false"}
	a := startServer(t, env)
	b := startServer(t, env)
	token := a.signIn(t, "Pat")
	persisted := func(q string) map[string]any {
		sum := sha256.Sum256([]byte(q))
		return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
	}
	// send posts body to s and returns the first error's code ("" for
	// none) and me's name.
	send := func(s *testServer, body map[string]any) (code, name string) {
		var out struct {
			Data struct {
				Me struct{ Name string }
			}
			Errors []struct {
				Extensions struct{ Code string }
			}
		}
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		if len(out.Errors) > 0 {
			code = out.Errors[0].Extensions.Code
		}
		return code, out.Data.Me.Name
	}

	q := `query SharedMe { me { name } }`
	code, _ := send(b, map[string]any{"extensions": persisted(q)})
	assert.Equal(t, "PERSISTED_QUERY_NOT_FOUND", code, "unknown everywhere at first")
	code, name := send(a, map[string]any{"query": q, "extensions": persisted(q)})
	require.Empty(t, code)
	assert.Equal(t, "Pat", name)
	code, name = send(b, map[string]any{"extensions": persisted(q)})
	assert.Empty(t, code, "registered on A, known on B")
	assert.Equal(t, "Pat", name)

	// A document over 16 KiB (here a long comment) stays with the replica
	// that learned it: what one client can make Redis hold is bounded.
	big := "query BigMe { me { name } }\n# " + strings.Repeat("x", 17<<10)
	code, _ = send(a, map[string]any{"query": big, "extensions": persisted(big)})
	require.Empty(t, code)
	code, _ = send(a, map[string]any{"extensions": persisted(big)})
	assert.Empty(t, code, "A knows it")
	code, _ = send(b, map[string]any{"extensions": persisted(big)})
	assert.Equal(t, "PERSISTED_QUERY_NOT_FOUND", code, "B was not told")

	// A document refused (it does not validate) is registered nowhere.
	bad := `query Bad { me { nope } }`
	code, _ = send(a, map[string]any{"query": bad, "extensions": persisted(bad)})
	assert.Equal(t, "GRAPHQL_VALIDATION_FAILED", code)
	code, _ = send(b, map[string]any{"extensions": persisted(bad)})
	assert.Equal(t, "PERSISTED_QUERY_NOT_FOUND", code)

	redis.Stop()
	start := time.Now()
	code, name = send(b, map[string]any{"extensions": persisted(q)})
	assert.Empty(t, code, "B keeps what it learned")
	assert.Equal(t, "Pat", name)
	other := `query OtherMe { me { name } }`
	code, _ = send(b, map[string]any{"extensions": persisted(other)})
	assert.Equal(t, "PERSISTED_QUERY_NOT_FOUND", code, "Redis down: the client is asked for the document")
	code, name = send(b, map[string]any{"query": other, "extensions": persisted(other)})
	assert.Empty(t, code, "and registering it still works")
	assert.Equal(t, "Pat", name)
	assert.Less(t, time.Since(start), 3*time.Second, "no stall while Redis is down")
}
