package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
)

// injector makes the server panic once at each place armed, through
// app.Config.InjectPanic.
type injector struct {
	mu    sync.Mutex
	armed map[string]bool
}

// newInjector returns an injector with the places where armed already:
// places a server reaches as it starts.
func newInjector(where ...string) *injector {
	in := &injector{armed: map[string]bool{}}
	for _, w := range where {
		in.armed[w] = true
	}
	return in
}

func (in *injector) arm(where string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.armed[where] = true
}

// inject is the server's hook: it panics at where if where is armed, once.
func (in *injector) inject(where string) {
	in.mu.Lock()
	fire := in.armed[where]
	delete(in.armed, where)
	in.mu.Unlock()
	if fire {
		panic("injected panic at " + where)
	}
}

// panicCase is one place a panic is injected at: how the test makes the
// server get there, and what the client who got there sees.
type panicCase struct {
	where string
	// requestID: the place serves one request or connection, whose id the
	// log line carries; the others are the server's own loops.
	requestID bool
	// atStart: the place was armed before the server started, which
	// reached it then (see newInjector).
	atStart bool
	trigger func(t *testing.T)
}

// TestPanicsContained injects a panic at each place the server recovers
// one, and checks that it ends only its own operation, connection or
// iteration: the client concerned sees INTERNAL or 4500 (or its stream
// ends), the panic is counted under its where label and logged once with
// its stack (and the request id, where there is one), a follower that
// panicked delivers events again after its back-off, and the server keeps
// serving a query and a subscription on another connection.
func TestPanicsContained(t *testing.T) {
	in := newInjector()
	s, alice, bob, general, last := startPanicServer(t, in, map[string]string{"WS_KEEPALIVE": "2s", "DASHBOARD_INTERVAL": "100ms", "DEMO_FEED": "false"})

	for _, c := range []panicCase{
		{where: "ws.connection", requestID: true, trigger: func(t *testing.T) {
			code, _ := dialWS(t, s, "graphql-transport-ws", nil).closeCode(5 * time.Second)
			assert.Equal(t, 4500, code, "the connection is closed as an internal error")
		}},
		{where: "ws.message", requestID: true, trigger: func(t *testing.T) { initClosesWith4500(t, s) }},
		{where: "ws.init", requestID: true, trigger: func(t *testing.T) { initClosesWith4500(t, s) }},
		{where: "ws.operation", requestID: true, trigger: func(t *testing.T) {
			c := s.chatWS(t, "")
			c.subscribe("q", `{ statuses(first: 1) { edges { cursor } } }`, nil)
			e := c.operationError("q")
			assert.Equal(t, "INTERNAL", e.Code())
			assert.NotEmpty(t, e.Extensions["requestId"], "the id the log line has")
			c.subscribe("q2", `{ statuses(first: 1) { edges { cursor } } }`, nil)
			assert.Equal(t, "next", c.read(5*time.Second).Type, "the connection carries on")
		}},
		{where: "ws.group", requestID: false, trigger: func(t *testing.T) {
			c := s.chatWS(t, "")
			c.subscribe("g", `subscription($a: ID) { statusPosted(after: $a) { id } }`, map[string]any{"a": last.ID})
			waitMetric(t, s, "switchboard_shared_subscriptions", 1) // caught up, it joined its group
			last = s.post(t, alice.token, "to the group")
			e := c.operationError("g")
			assert.Equal(t, "INTERNAL", e.Code(), "every member of the group hears of it")
		}},
		{where: "ws.keepalive", trigger: func(*testing.T) {}}, // its next round
		{where: "ws.close", requestID: true, trigger: func(t *testing.T) {
			c := dialWS(t, s, "graphql-transport-ws", nil) // no connection_init: closed after 3 s
			_, err := c.tryRead(10 * time.Second)
			require.Error(t, err, "the socket is closed even so")
		}},
		{where: "http", requestID: true, trigger: func(t *testing.T) {
			resp, err := http.Get(s.URL + "/healthz")
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
			assert.NotEmpty(t, resp.Header.Get("X-Request-ID"))
		}},
		{where: "stream.subscription", requestID: true, trigger: func(t *testing.T) {
			c := s.chatWS(t, "")
			c.subscribe("s", `subscription { statusPosted { id } }`, nil)
			assert.Equal(t, "complete", c.read(5*time.Second).Type, "the stream ends")
		}},
		{where: "stream.follower", trigger: func(t *testing.T) {
			// A hub runs while a subscription reads its stream; its next poll panics.
			c := s.chatWS(t, "")
			c.subscribe("f", `subscription($a: ID) { statusPosted(after: $a) { text } }`, map[string]any{"a": last.ID})
			waitMetric(t, s, `switchboard_panics_total{where="stream.follower"}`, 1)
			last = s.post(t, alice.token, "after the hub's panic")
			until(c, "f", "statusPosted", 10*time.Second, func(st status) bool { return st.Text == last.Text })
		}},
		{where: "chat.follower.typing", trigger: func(t *testing.T) {
			c := s.chatWS(t, bob.token)
			c.subscribe("t", `subscription($r: ID!) { typing(roomId: $r) { typing } }`, map[string]any{"r": general.ID})
			setTyping := func() {
				s.mustDo(t, alice.token, `mutation($r: ID!) { setTyping(roomId: $r, typing: true) }`, map[string]any{"r": general.ID}, nil)
			}
			setTyping() // lost with the panic: typing is best effort
			waitMetric(t, s, `switchboard_panics_total{where="chat.follower.typing"}`, 1)
			start := time.Now()
			primed[typingEvent](c, "t", "typing", setTyping)
			resumed := time.Since(start)
			t.Logf("the typing follower delivered again %s after its panic", resumed.Round(10*time.Millisecond))
			assert.Greater(t, resumed, 800*time.Millisecond, "after its back-off (1 s)")
		}},
		{where: "chat.announce", trigger: func(t *testing.T) {
			c := s.chatWS(t, bob.token) // joining a room changes presence: announced at once
			c.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { name } } }`, map[string]any{"r": general.ID})
		}},
		{where: "chat.presence", requestID: true, trigger: func(t *testing.T) {
			c := s.chatWS(t, bob.token)
			c.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { name } } }`, map[string]any{"r": general.ID})
			assert.Equal(t, "complete", c.read(5*time.Second).Type, "the watcher's stream ends")
		}},
		{where: "chat.rooms", requestID: true, trigger: func(t *testing.T) {
			// The room lists' shared watcher panics on the next change.
			c := s.chatWS(t, bob.token)
			c.subscribe("r", `subscription { roomsChanged { id } }`, nil)
			waitMetric(t, s, "switchboard_shared_subscriptions", 1)
			s.postMessage(t, alice.token, general.ID, "to the room lists")
			assert.Equal(t, "complete", c.read(5*time.Second).Type, "the watcher's stream ends")
		}},
		{where: "chat.unread", trigger: func(t *testing.T) {
			// The first change a room-list watcher reads has the replica
			// follow the room's stream for its unread counts: that follower
			// panics, and the room is counted again at its next change.
			c := s.chatWS(t, bob.token)
			c.subscribe("r", `subscription { roomsChanged { `+roomFields+` } }`, nil)
			defer c.conn.Close() // its group must not outlive the case
			primed[room](c, "r", "roomsChanged", func() {
				s.mustDo(t, bob.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
			})
			waitMetric(t, s, `switchboard_panics_total{where="chat.unread"}`, 1)
			s.postMessage(t, alice.token, general.ID, "after the counts' panic")
			got := until(c, "r", "roomsChanged", 10*time.Second, func(r room) bool { return r.ID == general.ID && r.UnreadCount > 0 })
			assert.Equal(t, 1, got.UnreadCount, "bob's count of general after alice's message")
		}},
		{where: "live.watcher", requestID: true, trigger: func(t *testing.T) {
			c := s.chatWS(t, "")
			c.subscribe("k", `subscription { kpiUpdated(module: "finance") { module } }`, nil)
			assert.Equal(t, "complete", c.read(5*time.Second).Type, "the watcher's stream ends")
		}},
		{where: "notify.unread", trigger: func(t *testing.T) {
			c := s.chatWS(t, bob.token) // a first watcher's count is read by the unread counts' loop
			c.subscribe("u", `subscription { unreadCount }`, nil)
			defer c.conn.Close() // its group must not outlive the case
			assert.Zero(t, until(c, "u", "unreadCount", 10*time.Second, func(int) bool { return true }), "counted again after the back-off")
		}},
		{where: "kpi.tick", trigger: func(*testing.T) {}}, // its next dashboard round, every 100 ms
		{where: "sse.subscription", requestID: true, trigger: func(t *testing.T) {
			// (A literal cursor keeps the stream to itself: no group to join.)
			es := openSSE(t, s.URL, `subscription { statusPosted(after: "0") { id } }`, nil, false, nil)
			ev, _ := es.next(t)
			assert.Equal(t, "complete", ev.Event, "the stream ends")
		}},
		{where: "sse.group", trigger: func(t *testing.T) {
			es := openSSE(t, s.URL, `subscription($a: ID) { statusPosted(after: $a) { id } }`, map[string]any{"a": last.ID}, false, nil)
			for {
				ev, ok := es.next(t)
				if !ok {
					break // its group let it go: its client resumes by Last-Event-ID
				}
				assert.NotEqual(t, "complete", ev.Event, "no complete: the client reconnects")
			}
		}},
	} {
		t.Run(c.where, func(t *testing.T) { checkContained(t, s, in, c, alice.token, &last) })
	}
}

// checkContained arms c's place on in (unless c.atStart) and triggers it,
// then checks that s counted the panic under its where label and logged it
// once, with its stack (and its request id, where there is one), and that
// s keeps serving (see keepsServing, which posts with token after *last,
// and then sets *last to what it posted).
func checkContained(t *testing.T, s *testServer, in *injector, c panicCase, token string, last *status) {
	t.Helper()
	sample := fmt.Sprintf(`switchboard_panics_total{where=%q}`, c.where)
	if !c.atStart {
		require.Zero(t, s.metric(t, sample))
		in.arm(c.where)
	}
	c.trigger(t)
	waitMetric(t, s, sample, 1)
	lines := panicLines(s.logs.String(), c.where)
	require.Len(t, lines, 1, "logged once")
	assert.Contains(t, lines[0], "level=ERROR")
	assert.Contains(t, lines[0], `stack="goroutine `, "with its stack")
	if c.requestID {
		assert.Regexp(t, `request_id=\S+`, lines[0])
	}
	*last = keepsServing(t, s, token, *last)
}

// startPanicServer starts a server with env whose panics in injects, its
// limits on requests, typing, statuses and operations off, and returns it
// with two signed-in users, the general room and a first status.
func startPanicServer(t *testing.T, in *injector, env map[string]string) (s *testServer, alice, bob chatUser, general room, first status) {
	t.Helper()
	env = maps.Clone(env)
	maps.Copy(env, map[string]string{"LIMIT_REQUESTS": "0", "LIMIT_TYPING": "0", "LIMIT_STATUSES": "0", "LIMIT_OPERATIONS": "0"})
	s = startServerWith(t, env, func(c *app.Config) { c.InjectPanic = in.inject })
	s.logsOnFailure(t)
	alice, bob = s.chatUser(t, "alice"), s.chatUser(t, "bob")
	return s, alice, bob, s.generalRoom(t), s.post(t, alice.token, "first")
}

// initClosesWith4500 opens a connection whose connection_init is answered
// by a close with 4500.
func initClosesWith4500(t *testing.T, s *testServer) {
	t.Helper()
	c := dialWS(t, s, "graphql-transport-ws", nil)
	c.send("connection_init", "", map[string]any{})
	code, reason := c.closeCode(5 * time.Second)
	assert.Equal(t, 4500, code)
	assert.Equal(t, "Internal server error", reason)
}

// panicLines returns the log lines of the panics recovered at where.
func panicLines(logs, where string) []string {
	var out []string
	re := regexp.MustCompile(`msg="panic recovered" where=` + regexp.QuoteMeta(where) + ` `)
	for line := range strings.SplitSeq(logs, "\n") {
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// keepsServing checks that s answers a query and a mutation over HTTP and
// delivers a new status to a subscription on a new connection, which it
// then closes; it returns the status posted.
func keepsServing(t *testing.T, s *testServer, token string, last status) status {
	t.Helper()
	assert.NotEmpty(t, s.statusTexts(t), "a query")
	c := s.chatWS(t, "")
	c.subscribe("live", `subscription($a: ID) { statusPosted(after: $a) { id text } }`, map[string]any{"a": last.ID})
	posted := s.post(t, token, "still serving")
	got := until(c, "live", "statusPosted", 10*time.Second, func(st status) bool { return st.ID == posted.ID })
	assert.Equal(t, posted.Text, got.Text, "a subscription")
	_ = c.conn.Close()
	waitMetric(t, s, "switchboard_shared_subscriptions", 0) // no group left to catch the next case's panic
	return posted
}
