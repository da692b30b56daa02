package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// startNginx runs deploy/nginx.conf with its upstream servers replaced by
// upstreams and its listen address by a free loopback port, and returns the
// proxy's base URL.
func startNginx(t *testing.T, upstreams ...*testServer) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		testenv.RequireService(t, "nginx is not installed (apt-get install nginx); skipping the load balancer test")
	}
	conf, err := os.ReadFile("../deploy/nginx.conf")
	require.NoError(t, err)
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "server %s max_fails=1 fail_timeout=5s;\n        ", strings.TrimPrefix(u.URL, "http://"))
	}
	text := regexp.MustCompile(`(?m)^\s*server 127\.0\.0\.1:808\d[^\n]*\n`).ReplaceAllString(string(conf), "")
	text = strings.Replace(text, "keepalive 32;", servers.String()+"keepalive 32;", 1)
	addr := freeLoopbackAddr(t)
	text = strings.Replace(text, "listen 80;", "listen "+addr+";\n        access_log off;", 1)
	require.Contains(t, text, "listen "+addr)

	dir := t.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	global := "daemon off; pid " + filepath.Join(dir, "nginx.pid") + "; error_log stderr warn;"
	if os.Geteuid() == 0 {
		global += " user root;"
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-g", global)
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second // workers hold the output pipe until they exit
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the master stops its workers too
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "nginx serves /healthz\n%s", logs)
	return url
}

// openWebsockets reads a replica's switchboard_websocket_connections gauge.
func openWebsockets(t *testing.T, s *testServer) int {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^switchboard_websocket_connections (\d+)`).FindSubmatch(body)
	require.NotNil(t, m, "metric missing")
	var n int
	_, _ = fmt.Sscan(string(m[1]), &n)
	return n
}

// TestNginxFailover: two replica processes behind deploy/nginx.conf. A
// subscriber connected through nginx loses its replica (killed, as in a
// crash), reconnects through nginx to the other and, resuming with after,
// misses nothing of what was posted meanwhile; the dead replica's users go
// offline for the others.
func TestNginxFailover(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL": storetest.MySQLURL(t), "REDIS_URL": redistest.URL(t),
		"TRUSTED_PROXIES": "127.0.0.1", "LOG_LEVEL": "info",
		"LIMIT_STATUSES": "0", // one poster, fifteen statuses at once
	}
	replicas := []*testServer{startProcess(t, env), startProcess(t, env)}
	proxy := startNginx(t, replicas...)
	front := &testServer{URL: proxy}

	poster := front.signIn(t, "poster")
	var posted []string
	post := func(text string) { posted = append(posted, front.post(t, poster, text).ID) }

	// A subscriber through nginx, and the replica it landed on.
	sub := dialWS(t, front, "graphql-transport-ws", nil)
	sub.init("")
	sub.subscribe("s", `subscription { statusPosted(after: "0") { id text } }`, nil)
	var on, other *testServer
	require.Eventually(t, func() bool {
		for i, r := range replicas {
			if openWebsockets(t, r) == 1 {
				on, other = r, replicas[1-i]
				return true
			}
		}
		return false
	}, 5*time.Second, 50*time.Millisecond)

	// Alice is online through the doomed replica; bob watches on the other.
	general := other.generalRoom(t)
	alice, bob := other.chatUser(t, "alice"), other.chatUser(t, "bob")
	tab := dialWS(t, on, "graphql-transport-ws", nil)
	tab.init(alice.token)
	tab.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
	watcher := other.chatWS(t, bob.token)
	watcher.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { users { name } } }`, map[string]any{"r": general.ID})
	is := func(want ...string) func(presence) bool {
		return func(p presence) bool { return slices.Equal(names(p.Users), want) }
	}
	until(watcher, "p", "presence", 10*time.Second, is("bob", "alice"))

	var got []string
	read := func(c *wsClient, n int) {
		for range n {
			var ev event
			c.nextData("s", "statusPosted", &ev, 10*time.Second)
			got = append(got, ev.ID)
		}
	}
	for i := range 5 {
		post(fmt.Sprintf("before %d", i))
	}
	read(sub, 5)

	on.kill()
	killed := time.Now()
	_, err := sub.tryRead(10 * time.Second)
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "the connection to the killed replica ends: %v", err)
	assert.Equal(t, websocket.CloseAbnormalClosure, ce.Code, "a crash sends no close frame")
	for i := range 5 {
		post(fmt.Sprintf("while away %d", i)) // nginx sends these to the survivor
	}

	again := dialWS(t, front, "graphql-transport-ws", nil)
	again.init("")
	again.subscribe("s", `subscription($a: ID) { statusPosted(after: $a) { id text } }`, map[string]any{"a": got[len(got)-1]})
	for i := range 5 {
		post(fmt.Sprintf("after %d", i))
	}
	read(again, 10)
	assert.Equal(t, posted, got, "every status once, in order, across the failover")

	until(watcher, "p", "presence", chat.PresenceTTL+2*chat.HeartbeatInterval, is("bob"))
	t.Logf("the dead replica's user went offline after %s", time.Since(killed).Round(100*time.Millisecond))
}

// TestNginxPassesEventStreams: through deploy/nginx.conf, a subscription
// over Server-Sent Events gets each event as it happens (nginx buffers
// nothing of it), its keepalive comments, and its resumption from
// Last-Event-ID.
func TestNginxPassesEventStreams(t *testing.T) {
	srv := startServer(t, map[string]string{"WS_KEEPALIVE": "1s", "DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	proxy := startNginx(t, srv)
	token := srv.signIn(t, "Nia")
	first := srv.post(t, token, "before")

	// (From after the first status: a status posted before the subscription
	// has reached its stream would be missed without it.)
	const query = `subscription($a: ID) { statusPosted(after: $a) { id text } }`
	vars := map[string]any{"a": first.ID}
	s := openSSE(t, proxy, query, vars, false, nil)
	require.Equal(t, http.StatusOK, s.resp.StatusCode)
	// Each status as soon as it is posted: a buffering proxy would hold
	// these few hundred bytes back.
	for _, text := range []string{"one", "two"} {
		st := srv.post(t, token, text)
		got, id := s.nextStatus(t)
		assert.Equal(t, st.ID, got.ID)
		assert.Equal(t, st.ID, id)
	}
	deadline := time.After(sseTimeout)
	for comment := false; !comment; {
		select {
		case ev := <-s.events:
			comment = ev.Comment == "keepalive"
		case <-deadline:
			t.Fatal("no keepalive comment through nginx")
		}
	}
	s.close()

	s = openSSE(t, proxy, query, map[string]any{"a": "0"}, false, http.Header{"Last-Event-ID": {first.ID}})
	for _, text := range []string{"one", "two"} {
		got, _ := s.nextStatus(t)
		assert.Equal(t, text, got.Text, "resumed after Last-Event-ID through nginx")
	}
}
