package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// KPIs and notifications over the real server.

// TestRecordKPIsRolesAndAtomicity: only admins and publishers record; a
// batch with one bad value stores nothing.
func TestRecordKPIsRolesAndAtomicity(t *testing.T) {
	s := startOpsServer(t, nil)
	guest := s.signIn(t, "guest")
	for _, c := range []struct{ token, code string }{{"", "UNAUTHENTICATED"}, {guest, "FORBIDDEN"}} {
		r := s.record(t, c.token, kv("finance", "revenue", 1))
		require.Len(t, r.Errors, 1)
		assert.Equal(t, c.code, r.Errors[0].Code())
	}
	assert.Empty(t, s.moduleKPIs(t, "finance"), "refused calls store nothing")

	r := s.record(t, s.publisher, kv("finance", "revenue", 100), kv("finance", "margin", 0.3))
	require.Empty(t, r.Errors)
	r = s.record(t, s.admin, kv("finance", "revenue", 120))
	require.Empty(t, r.Errors)
	got := s.moduleKPIs(t, "finance")
	require.Len(t, got, 2)
	assert.Equal(t, kpiValue{Module: "finance", Key: "margin", Label: "margin", Value: 0.3}, got[0])
	require.NotNil(t, got[1].Change)
	assert.InDelta(t, 20, *got[1].Change, 1e-9, "change since the previous value")

	for _, bad := range []map[string]any{
		kv("Finance", "revenue", 1), kv("finance", "re venue", 1), kv("finance", "", 1),
		kv("finance", strings.Repeat("k", 33), 1),
	} {
		r := s.record(t, s.admin, kv("finance", "revenue", 999), bad)
		require.Len(t, r.Errors, 1, "%v", bad)
		assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code(), "%v: %s", bad, r.Errors[0].Message)
		assert.Contains(t, r.Errors[0].Message, "inputs[1]", "the error names the bad input")
	}
	// A value too large for a float64 cannot even be sent.
	r = s.do(t, s.admin, `mutation { recordKPIs(inputs: [{module: "finance", key: "revenue", value: 999}, {module: "finance", key: "x", value: 1e400}]) { key } }`, nil)
	require.NotEmpty(t, r.Errors)
	assert.Equal(t, got, s.moduleKPIs(t, "finance"), "nothing of a refused batch was stored")
	var h struct{ KpiHistory []struct{ Value float64 } }
	s.mustDo(t, "", `{ kpiHistory(module: "finance", key: "revenue") { value } }`, nil, &h)
	assert.Equal(t, []struct{ Value float64 }{{100}, {120}}, h.KpiHistory, "one sample per recorded value, oldest first")
}

// TestKPIUpdatedSnapshotAndIsolation: a kpiUpdated subscriber gets the
// module's full set at once, then after each change of its module only.
func TestKPIUpdatedSnapshotAndIsolation(t *testing.T) {
	s := startOpsServer(t, nil)
	require.Empty(t, s.record(t, s.admin, kv("hr", "headcount", 10), kv("hr", "open", 2), kv("security", "incidents", 1)).Errors)
	ws := s.chatWS(t, "")
	ws.subscribe("k", `subscription { kpiUpdated(module: "hr") { module kpis { `+kpiFields+` } } }`, nil)
	type set struct {
		Module string     `json:"module"`
		KPIs   []kpiValue `json:"kpis"`
	}
	var first set
	ws.nextData("k", "kpiUpdated", &first, 5*time.Second)
	assert.Equal(t, "hr", first.Module)
	require.Len(t, first.KPIs, 2, "the first event is the current full set")

	// Another module's change, then this module's: the next event is ours.
	require.Empty(t, s.record(t, s.admin, kv("security", "incidents", 5)).Errors)
	require.Empty(t, s.record(t, s.admin, kv("hr", "open", 3)).Errors)
	var next set
	ws.nextData("k", "kpiUpdated", &next, 5*time.Second)
	assert.Equal(t, "hr", next.Module)
	require.Len(t, next.KPIs, 2, "every event is the full set")
	assert.Equal(t, 3.0, next.KPIs[1].Value)
}

// TestDashboardRateBound: the dashboard subscription starts with the
// current dashboard and then sends at most one per interval, however often
// KPIs change, ending with the latest values.
func TestDashboardRateBound(t *testing.T) {
	const interval = 300 * time.Millisecond
	s := startOpsServer(t, map[string]string{"DASHBOARD_INTERVAL": interval.String()})
	require.Empty(t, s.record(t, s.admin, kv("finance", "revenue", 100), kv("hr", "headcount", 10)).Errors)
	ws := s.chatWS(t, "")
	ws.subscribe("d", `subscription { dashboard(topN: 1) { modules { module } topMovers { module key value } } }`, nil)
	type dash struct {
		Modules   []struct{ Module string } `json:"modules"`
		TopMovers []kpiValue                `json:"topMovers"`
	}
	var first dash
	ws.nextData("d", "dashboard", &first, 5*time.Second)
	assert.Len(t, first.Modules, 2, "the current dashboard first")
	assert.Empty(t, first.TopMovers, "first values have not moved")

	// Record 60 changes over about 1.8 s, counting dashboards meanwhile.
	events := make(chan dash, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var d dash
			m, err := ws.tryRead(3 * time.Second)
			if err != nil {
				return
			}
			var p struct{ Data struct{ Dashboard dash } }
			if json.Unmarshal(m.Payload, &p) == nil {
				d = p.Data.Dashboard
				events <- d
			}
		}
	}()
	start := time.Now()
	for i := range 60 {
		require.Empty(t, s.record(t, s.admin, kv("finance", "revenue", 101+i)).Errors)
		time.Sleep(30 * time.Millisecond)
	}
	elapsed := time.Since(start)
	<-done // the reader stops 3 s after the last event
	close(events)
	var got []dash
	for d := range events {
		got = append(got, d)
	}
	bound := int(elapsed/interval) + 2
	t.Logf("%d dashboards for 60 changes over %s (interval %s, bound %d)", len(got), elapsed.Round(time.Millisecond), interval, bound)
	assert.LessOrEqual(t, len(got), bound, "at most one dashboard per interval")
	assert.GreaterOrEqual(t, len(got), 2, "changes keep coming through")
	require.NotEmpty(t, got)
	last := got[len(got)-1]
	require.Len(t, last.TopMovers, 1)
	assert.Equal(t, 160.0, last.TopMovers[0].Value, "the last dashboard has the final value")
}

// TestNotificationPrivacy: nobody sees, counts, marks or receives another
// user's notification; every path answers NOT_FOUND for it, as for one that
// does not exist.
func TestNotificationPrivacy(t *testing.T) {
	s := startOpsServer(t, nil)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	toAlice := s.send(t, &alice, "for alice")
	toBob := s.send(t, &bob, "for bob")
	all := s.send(t, nil, "for everyone")
	assert.True(t, all.Broadcast)

	titles := func(ns []notification) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.Title
		}
		return out
	}
	assert.Equal(t, []string{"for everyone", "for alice"}, titles(s.inbox(t, alice.token)), "newest first, own and broadcast only")
	assert.Equal(t, []string{"for everyone", "for bob"}, titles(s.inbox(t, bob.token)))
	var c struct{ UnreadCount int }
	s.mustDo(t, bob.token, `{ unreadCount }`, nil, &c)
	assert.Equal(t, 2, c.UnreadCount)

	mark := func(token, id string) string {
		r := s.do(t, token, `mutation($id: ID!) { markNotificationRead(id: $id) { id } }`, map[string]any{"id": id})
		if len(r.Errors) == 0 {
			return "ok"
		}
		return r.Errors[0].Code() + ": " + strings.ReplaceAll(r.Errors[0].Message, id, "ID")
	}
	assert.Equal(t, mark(bob.token, "424242"), mark(bob.token, toAlice.ID), "someone else's is exactly a missing one")
	assert.True(t, strings.HasPrefix(mark(bob.token, toAlice.ID), "NOT_FOUND"))
	assert.False(t, s.inbox(t, alice.token)[1].Read, "bob's attempt did not mark alice's read")

	// Reading a broadcast is per user.
	assert.Equal(t, "ok", mark(alice.token, all.ID))
	assert.True(t, s.inbox(t, alice.token)[0].Read)
	assert.False(t, s.inbox(t, bob.token)[0].Read, "alice reading the broadcast leaves it unread for bob")
	var n struct{ MarkAllNotificationsRead int }
	s.mustDo(t, bob.token, `mutation { markAllNotificationsRead }`, nil, &n)
	assert.Equal(t, 2, n.MarkAllNotificationsRead)
	s.mustDo(t, alice.token, `{ unreadCount }`, nil, &c)
	assert.Equal(t, 1, c.UnreadCount, "bob marking all read touched only his")

	// Live: bob's subscription replays and follows his inbox only.
	ws := s.chatWS(t, bob.token)
	ws.subscribe("n", `subscription { notificationAdded(after: "0") { `+notificationFields+` } }`, nil)
	var got []notification
	for range 2 {
		var v notification
		ws.nextData("n", "notificationAdded", &v, 5*time.Second)
		got = append(got, v)
	}
	assert.Equal(t, []string{toBob.ID, all.ID}, []string{got[0].ID, got[1].ID}, "replay: his and the broadcast, in order")
	s.send(t, &alice, "for alice again")
	last := s.send(t, &bob, "for bob again")
	var v notification
	ws.nextData("n", "notificationAdded", &v, 5*time.Second)
	assert.Equal(t, last.ID, v.ID, "alice's newer one never reached bob")

	// Without a token there is no inbox.
	for _, q := range []string{`{ unreadCount }`, `{ notifications { edges { cursor } } }`, `mutation { markAllNotificationsRead }`} {
		r := s.do(t, "", q, nil)
		require.Len(t, r.Errors, 1, q)
		assert.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code(), q)
	}
	// Only admins send.
	r := s.do(t, s.publisher, `mutation { sendNotification(input: {title: "x"}) { id } }`, nil)
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "FORBIDDEN", r.Errors[0].Code())
	r = s.do(t, s.admin, `mutation { sendNotification(input: {title: "x", link: "javascript:alert(1)"}) { id } }`, nil)
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
}

// TestUnreadCountAcrossTabs: two connections of one user follow the same
// count, whichever tab reads; another user's count does not move.
func TestUnreadCountAcrossTabs(t *testing.T) {
	s := startOpsServer(t, nil)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	s.send(t, &alice, "before")
	tabs := []*wsClient{s.chatWS(t, alice.token), s.chatWS(t, alice.token)}
	other := s.chatWS(t, bob.token)
	for _, c := range append(tabs, other) {
		c.subscribe("u", `subscription { unreadCount }`, nil)
	}
	count := func(c *wsClient) int {
		var n int
		c.nextData("u", "unreadCount", &n, 5*time.Second)
		return n
	}
	for i, c := range tabs {
		assert.Equal(t, 1, count(c), "tab %d starts with the current count", i)
	}
	assert.Equal(t, 0, count(other))

	n := s.send(t, &alice, "new")
	for i, c := range tabs {
		assert.Equal(t, 2, until(c, "u", "unreadCount", 5*time.Second, func(n int) bool { return n != 1 }), "tab %d", i)
	}
	s.mustDo(t, alice.token, `mutation($id: ID!) { markNotificationRead(id: $id) { id } }`, map[string]any{"id": n.ID}, nil)
	for i, c := range tabs {
		assert.Equal(t, 1, count(c), "tab %d sees the read of another tab", i)
	}
	s.send(t, nil, "broadcast")
	assert.Equal(t, 2, count(tabs[0]))
	assert.Equal(t, 1, count(other), "a broadcast counts for bob too; alice's own never did")
}

// TestNotificationResume: notificationAdded keeps the resume promise under
// concurrent senders.
func TestNotificationResume(t *testing.T) {
	for _, backend := range databases {
		t.Run(string(backend), func(t *testing.T) {
			env := withDatabase(t, backend, map[string]string{"LIMIT_REQUESTS": "0"}) // the posters and resuming subscribers flood on purpose
			s := startOpsServer(t, env)
			reader := s.chatUser(t, "reader")
			feed := durableFeed{
				subscription: `subscription($a: ID) { notificationAdded(after: $a) { id text: title } }`,
				field:        "notificationAdded",
				token:        reader.token,
				poster:       s.admin,
				post: func(tb testing.TB, srv *testServer, token, text string) string {
					var d struct{ SendNotification notification }
					srv.mustDo(tb, token, `mutation($in: NotificationInput!) { sendNotification(input: $in) { id } }`,
						map[string]any{"in": map[string]any{"userId": reader.ID, "title": text}}, &d)
					return d.SendNotification.ID
				},
				// The reader's are the only notifications: its inbox
				// positions are the stream's.
				position: strconv.Atoi,
			}
			checkResume(t, feed, []*testServer{s.testServer}, []*testServer{s.testServer}, 4, 25)
		})
	}
}

// TestInboxesShareOneGroup: every user's notificationAdded subscriptions
// (same selection, any cursor or none, both protocols) are served by one
// shared group, and each tab still gets exactly its own
// inbox, in order: the broadcasts and its user's own notifications, never
// another user's.
func TestInboxesShareOneGroup(t *testing.T) {
	s := startOpsServer(t, map[string]string{"LIMIT_REQUESTS": "0"})
	const doc = `subscription($a: ID) { notificationAdded(after: $a) { id title } }`
	users := []chatUser{s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol"), s.chatUser(t, "dave")}
	alice, bob, carol := &users[0], &users[1], &users[2]
	s.send(t, alice, "a0")
	s.send(t, nil, "b0")

	type tab struct {
		c    *wsClient
		user int
	}
	var tabs []tab
	open := func(user int, proto string) *wsClient {
		c := dialWS(t, s.testServer, proto, nil)
		c.init(users[user].token)
		c.subscribe("n", doc, map[string]any{"a": "0"})
		tabs = append(tabs, tab{c, user})
		return c
	}
	for i := range users {
		open(i, "graphql-transport-ws")
		open(i, "graphql-ws")
	}
	titles := func(c *wsClient, n int) []string {
		out := make([]string, n)
		for i := range out {
			var v notification
			c.nextData("n", "notificationAdded", &v, 5*time.Second)
			out[i] = v.Title
		}
		return out
	}
	for _, tb := range tabs {
		want := []string{"b0"}
		if tb.user == 0 {
			want = []string{"a0", "b0"}
		}
		assert.Equal(t, want, titles(tb.c, len(want)), "%s's replay", users[tb.user].Name)
	}
	waitMetric(t, s.testServer, "switchboard_shared_subscriptions", 1)
	// Plain subscriptions, of the same selection without the cursor (and
	// under a name of their own), join the same group as soon as their
	// resolver accepts them, before any event of their own: then only
	// their connections' readers remain.
	goroutines := s.metric(t, "go_goroutines")
	var plain []tab
	for _, u := range []int{0, 1, 0, 1, 2, 3, 2, 3} {
		c := dialWS(t, s.testServer, "graphql-transport-ws", nil)
		c.init(users[u].token)
		c.subscribe("n", "subscription Inbox {\n  notificationAdded { id\n title }\n}", nil)
		plain = append(plain, tab{c, u})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.metric(t, "go_goroutines") > goroutines+float64(len(plain))+4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, s.metric(t, "go_goroutines"), goroutines+float64(len(plain))+4, "plain subscriptions run on their own")
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "plain subscriptions join the resumers' group")
	tabs = append(tabs, plain...)

	s.send(t, nil, "b1")
	s.send(t, alice, "pa")
	s.send(t, bob, "pb")
	s.send(t, nil, "b2")
	s.send(t, carol, "pc")
	s.send(t, nil, "b3")
	live := [][]string{
		{"b1", "pa", "b2", "b3"},
		{"b1", "pb", "b2", "b3"},
		{"b1", "b2", "pc", "b3"},
		{"b1", "b2", "b3"},
	}
	for _, tb := range tabs {
		assert.Equal(t, live[tb.user], titles(tb.c, len(live[tb.user])), "%s's live inbox", users[tb.user].Name)
	}

	// A tab opened later replays its own inbox, then joins the same group.
	late := open(3, "graphql-transport-ws")
	assert.Equal(t, []string{"b0", "b1", "b2", "b3"}, titles(late, 4))
	s.send(t, &users[3], "pd")
	for _, tb := range tabs {
		if tb.user == 3 {
			assert.Equal(t, []string{"pd"}, titles(tb.c, 1))
		}
	}
	s.send(t, nil, "b4")
	for _, tb := range tabs {
		assert.Equal(t, []string{"b4"}, titles(tb.c, 1), "%s got nothing in between", users[tb.user].Name)
	}
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every inbox, with a cursor or without")
}

// TestUnreadCountsShareOneGroup: every user's unreadCount subscriptions are
// served by one shared group, and each tab still follows its own user's
// count only: through broadcasts, a user's own notifications and reads in
// another tab, and after all of a user's tabs closed and one came back.
func TestUnreadCountsShareOneGroup(t *testing.T) {
	s := startOpsServer(t, map[string]string{"LIMIT_REQUESTS": "0"})
	users := []chatUser{s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")}
	alice, bob := &users[0], &users[1]
	s.send(t, alice, "before")

	tabs := make([][]*wsClient, len(users))
	open := func(user int, proto string) *wsClient {
		c := dialWS(t, s.testServer, proto, nil)
		c.init(users[user].token)
		c.subscribe("u", `subscription { unreadCount }`, nil)
		tabs[user] = append(tabs[user], c)
		return c
	}
	count := func(c *wsClient) int {
		var n int
		c.nextData("u", "unreadCount", &n, 5*time.Second)
		return n
	}
	// expect reads each tab's counts until it shows want[user]; a tab may
	// skip intermediate counts, never show another user's.
	expect := func(want ...int) {
		t.Helper()
		for u, cs := range tabs {
			for i, c := range cs {
				got := until(c, "u", "unreadCount", 5*time.Second, func(n int) bool { return n >= want[u] })
				assert.Equal(t, want[u], got, "%s's tab %d", users[u].Name, i)
			}
		}
	}
	for u := range users {
		open(u, "graphql-transport-ws")
		open(u, "graphql-ws")
	}
	for u, cs := range tabs {
		for _, c := range cs {
			assert.Equal(t, map[int]int{0: 1}[u], count(c), "%s starts with the current count", users[u].Name)
		}
	}
	s.send(t, nil, "b1")
	expect(2, 1, 1)
	waitMetric(t, s.testServer, "switchboard_shared_subscriptions", 1)

	s.send(t, bob, "for bob")
	s.send(t, nil, "b2")
	expect(3, 3, 2)
	var d struct{ MarkAllNotificationsRead int }
	s.mustDo(t, bob.token, `mutation { markAllNotificationsRead }`, nil, &d)
	require.Equal(t, 3, d.MarkAllNotificationsRead)
	for i, c := range tabs[1] {
		assert.Equal(t, 0, count(c), "bob's tab %d sees his read", i)
	}

	// Carol leaves; her inbox is counted again when she comes back.
	for _, c := range tabs[2] {
		c.conn.Close()
	}
	tabs[2] = nil
	s.send(t, nil, "b3")
	expect(4, 1)
	back := open(2, "graphql-transport-ws")
	assert.Equal(t, 3, count(back), "carol's count, read again")
	s.send(t, alice, "for alice")
	s.send(t, nil, "b4")
	expect(6, 2, 4)
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every count")
}

// TestMadeUpInboxDocumentsAreBounded: a client that subscribes to its inbox
// with many distinct documents gets four shared groups of its own (a group
// of the spanning fields does every inbox's work), the rest served on their
// own; every subscription still gets its notification, and another user's
// document still gets a shared group.
func TestMadeUpInboxDocumentsAreBounded(t *testing.T) {
	s := startOpsServer(t, map[string]string{"LIMIT_REQUESTS": "0", "LIMIT_OPERATIONS": "0"})
	mallory, ann := s.chatUser(t, "mallory"), s.chatUser(t, "ann")
	c := s.chatWS(t, mallory.token)
	const docs = 70
	for i := range docs {
		c.subscribe(fmt.Sprint(i), fmt.Sprintf(`subscription { n%d: notificationAdded { id title } }`, i), nil)
	}
	waitMetric(t, s.testServer, "switchboard_shared_subscriptions", 4)
	annWS := s.chatWS(t, ann.token)
	annWS.subscribe("n", `subscription { notificationAdded { id title } }`, nil)
	waitMetric(t, s.testServer, "switchboard_shared_subscriptions", 5)

	s.send(t, nil, "for everyone")
	got := map[string]bool{}
	for len(got) < docs {
		m := c.read(5 * time.Second)
		require.Contains(t, []string{"next", "data"}, m.Type, "%s", m.Payload)
		assert.Contains(t, string(m.Payload), "for everyone")
		assert.False(t, got[m.ID], "subscription %s got it once", m.ID)
		got[m.ID] = true
	}
	var n notification
	annWS.nextData("n", "notificationAdded", &n, 5*time.Second)
	assert.Equal(t, "for everyone", n.Title)
	assert.Equal(t, 5.0, s.metric(t, "switchboard_shared_subscriptions"))
}
