package e2e

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// processLevel are the messages logged outside any request or connection
// (start, shutdown, background hubs and jobs); every other line is logged
// while serving one and must carry its id.
var processLevel = []string{
	"listening", "shutting down", "stopped", "shutdown did not finish in time",
	"redis is not reachable; running degraded until it is",
	"stream lost its broker subscription, resubscribing", "stream resubscribe failed",
	"stream dropped an undecodable announcement", "stream poll failed", "stream fill failed",
	"bad presence announcement on the broker", "bad typing event on the broker", "bad room change on the broker",
	"KPI refresh failed", "dashboard refresh failed", "KPI retention failed", "pruned KPI samples",
	"demo feed: lead not taken", "demo feed: record failed", "unread recount failed",
}

// TestInfoLogsCarryRequestIDsAndNoSecrets drives HTTP and WebSocket traffic,
// successful and failing, through a server logging JSON at info: every line
// is JSON, none holds a token or what users wrote, and every line logged
// while serving a request or connection has its request_id (for a
// connection, the id its errors show the client).
func TestInfoLogsCarryRequestIDsAndNoSecrets(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, map[string]string{"DATA_DIR": dir, "LOG_FORMAT": "json", "LOG_LEVEL": "info"})
	const statusMarker, messageMarker, notFoundMarker = "status-marker-7f3a", "message-marker-91c2", "notfound-marker-5d0e"

	alice := s.chatUser(t, "alice")
	c := s.chatWS(t, alice.token)
	c.subscribe("feed", `subscription { statusPosted { `+statusFields+` } }`, nil)
	posted := primed[status](c, "feed", "statusPosted", func() { s.post(t, alice.token, statusMarker) })
	require.Equal(t, statusMarker, posted.Text)
	r := s.createRoom(t, alice.token, "logs")
	s.postMessage(t, alice.token, r.ID, messageMarker)
	missing := s.do(t, alice.token, `mutation($t: String!) { postMessage(roomId: "999999", text: $t) { id } }`, map[string]any{"t": notFoundMarker})
	require.Len(t, missing.Errors, 1)
	require.Equal(t, "NOT_FOUND", missing.Errors[0].Code())

	bad := dialWS(t, s, "graphql-transport-ws", nil)
	bad.send("connection_init", "", map[string]any{"authorization": "Bearer " + alice.token + "x"})
	code, _ := bad.closeCode(5 * time.Second)
	require.Equal(t, 4403, code)

	// Break the database: internal errors over HTTP and over the connection,
	// and a replay that keeps failing on the connection's subscription.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "switchboard.db"))
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Exec("DROP TABLE users")
	require.NoError(t, err)
	me := s.do(t, alice.token, `{ me { id } }`, nil)
	require.Len(t, me.Errors, 1)
	require.Equal(t, "INTERNAL", me.Errors[0].Code())
	c.subscribe("me", `{ me { id } }`, nil)
	m := c.read(5 * time.Second)
	for m.ID != "me" { // statuses the feed had queued
		m = c.read(5 * time.Second)
	}
	require.Equal(t, "next", m.Type, "%s", m.Payload)
	var p struct{ Errors []gqlError }
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	require.Len(t, p.Errors, 1, "%s", m.Payload)
	connID, _ := p.Errors[0].Extensions["requestId"].(string)
	require.NotEmpty(t, connID)
	c.subscribe("replay", `subscription { statusPosted(after: "0") { id } }`, nil)
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), `"stream replay failed, retrying"`) },
		10*time.Second, 10*time.Millisecond)
	_ = c.conn.Close()
	s.stop()
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), `"msg":"stopped"`) }, 5*time.Second, 10*time.Millisecond)

	scoped := checkInfoLogs(t, s.logs.String(), []string{alice.token, "Bearer", statusMarker, messageMarker, notFoundMarker})

	// The checks above saw request-scoped lines of both kinds, and the
	// connection's lines carry the id its client was shown.
	assert.Contains(t, requestIDsOf(scoped, "internal error"), me.Errors[0].Extensions["requestId"], "the HTTP request's internal error")
	assert.Contains(t, requestIDsOf(scoped, "internal error"), connID, "the connection's internal error")
	replays := requestIDsOf(scoped, "stream replay failed, retrying")
	require.NotEmpty(t, replays)
	for _, id := range replays {
		assert.Equal(t, connID, id, "the replay logs under its connection's id")
	}
}

// checkInfoLogs checks every line of a server's log: it is JSON, not at
// debug level, and holds none of secrets; unless its message is one of
// processLevel, it was logged while serving and has a request_id. It
// returns those request-scoped lines, decoded.
func checkInfoLogs(t *testing.T, logs string, secrets []string) []map[string]any {
	t.Helper()
	var scoped []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON log line: %s", line)
		assert.NotEqual(t, "DEBUG", rec["level"], line)
		for _, secret := range secrets {
			assert.NotContains(t, line, secret, "a log line holds %q", secret)
		}
		if msg, _ := rec["msg"].(string); !slices.Contains(processLevel, msg) {
			id, _ := rec["request_id"].(string)
			assert.NotEmpty(t, id, "a line logged while serving has no request_id: %s", line)
			scoped = append(scoped, rec)
		}
	}
	require.NoError(t, sc.Err())
	return scoped
}

// requestIDsOf returns the request_id of each log line whose message is
// msg, in order.
func requestIDsOf(lines []map[string]any, msg string) []string {
	var ids []string
	for _, rec := range lines {
		if rec["msg"] == msg {
			id, _ := rec["request_id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}
