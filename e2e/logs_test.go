package e2e

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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
	refused := s.do(t, alice.token+"x", `{ me { id } }`, nil)
	require.Equal(t, http.StatusUnauthorized, refused.Status)

	// Break the database: internal errors over HTTP and over the connection,
	// and a replay that keeps failing on the connection's subscription.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "switchboard.db"))
	require.NoError(t, err)
	defer raw.Close()
	// (Not the users table: the server keeps the users it has read, which
	// never change, so the caller's own record would still be found. And the
	// replay below is of the room, whose stream has no live subscriber: the
	// status feed's keeps its latest events in memory.)
	_, err = raw.Exec("DROP TABLE statuses")
	require.NoError(t, err)
	_, err = raw.Exec("DROP TABLE messages")
	require.NoError(t, err)
	me := s.do(t, alice.token, `{ statuses(first: 1) { edges { cursor } } }`, nil)
	require.Len(t, me.Errors, 1)
	require.Equal(t, "INTERNAL", me.Errors[0].Code())
	c.subscribe("me", `{ statuses(first: 1) { edges { cursor } } }`, nil)
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
	c.subscribe("replay", `subscription($r: ID!) { messageAdded(roomId: $r, after: "0") { id } }`, map[string]any{"r": r.ID})
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
	// Both refused tokens (over HTTP and in connection_init) are logged,
	// and the connection the server closed for it.
	assert.Len(t, requestIDsOf(scoped, "authentication refused"), 2)
	assert.Len(t, linesOf(scoped, "websocket closed", "code", 4403.0), 1)
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
	return checkLogs(t, logs, false, secrets)
}

// checkLogs is checkInfoLogs, with debug lines allowed when debug is set.
func checkLogs(t *testing.T, logs string, debug bool, secrets []string) []map[string]any {
	t.Helper()
	var scoped []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON log line: %s", line)
		if !debug {
			assert.NotEqual(t, "DEBUG", rec["level"], line)
		}
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

// linesOf returns the lines whose message is msg and whose field key is
// want (a JSON number decodes as a float64).
func linesOf(lines []map[string]any, msg, key string, want any) []map[string]any {
	var out []map[string]any
	for _, rec := range lines {
		if rec["msg"] == msg && rec[key] == want {
			out = append(out, rec)
		}
	}
	return out
}

// TestOperatorLogsSayWhatHappened: at debug level, a server's log tells
// an operator what happened to each connection and refusal, each line with
// the request id and the client's address and nothing the client sent:
// connections opened (with the subprotocol) and closed (with the code and
// who closed), at debug, and at info when the server closed one for the
// client's fault; refused tokens, at info, with the reason; limits hit, at
// info, with the limit (WebSocket) or the field (a service's limit).
func TestOperatorLogsSayWhatHappened(t *testing.T) {
	s := startServer(t, map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "LIMIT_SUBSCRIPTIONS": "1", "LIMIT_STATUSES": "1"})
	const marker = "status-marker-a81f"
	token := s.signIn(t, "Olga")

	// A connection that runs one subscription, is refused a second, and is
	// closed by its client.
	ok := s.chatWS(t, token)
	ok.subscribe("feed", `subscription { statusPosted { id } }`, nil)
	ok.subscribe("more", `subscription { statusPosted { id } }`, nil)
	require.Equal(t, "RATE_LIMITED", ok.operationError("more").Code())
	okClient := ok.conn.LocalAddr().String()
	require.NoError(t, ok.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")))
	code, _ := ok.closeCode(5 * time.Second)
	require.Equal(t, websocket.CloseNormalClosure, code)

	// A connection whose token is refused.
	bad := dialWS(t, s, "graphql-transport-ws", nil)
	badClient := bad.conn.LocalAddr().String()
	bad.send("connection_init", "", map[string]any{"authorization": "Bearer " + token + "x"})
	code, _ = bad.closeCode(5 * time.Second)
	require.Equal(t, 4403, code)

	// Statuses over the per-user limit (1 a second, bursts of 2).
	limited := false
	for i := 0; i < 10 && !limited; i++ {
		r := s.do(t, token, `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": marker})
		limited = len(r.Errors) > 0 && r.Errors[0].Code() == "RATE_LIMITED"
	}
	require.True(t, limited, "ten statuses at once are over the limit")

	var lines []map[string]any
	require.Eventually(t, func() bool {
		lines = checkLogs(t, s.logs.String(), true, []string{token, "Bearer", marker})
		return len(linesOf(lines, "websocket closed", "client", okClient)) == 1 && len(linesOf(lines, "websocket closed", "client", badClient)) == 1
	}, 5*time.Second, 10*time.Millisecond, "both connections' closes are logged")

	one := func(msg, client string) map[string]any {
		t.Helper()
		found := linesOf(lines, msg, "client", client)
		require.Len(t, found, 1, "%q lines of %s", msg, client)
		return found[0]
	}
	// Each connection's lines carry one request id: the upgrade's.
	opened, closed, hit := one("websocket opened", okClient), one("websocket closed", okClient), one("rate limit hit", okClient)
	assert.Equal(t, "DEBUG", opened["level"])
	assert.Equal(t, "graphql-transport-ws", opened["subprotocol"])
	assert.Equal(t, map[string]any{"level": "DEBUG", "code": 1000.0, "by": "client"}, pick(closed, "level", "code", "by"))
	assert.Equal(t, map[string]any{"level": "INFO", "limit": "operations_per_connection"}, pick(hit, "level", "limit"))
	assert.Equal(t, opened["request_id"], closed["request_id"])
	assert.Equal(t, opened["request_id"], hit["request_id"])

	badOpened, badClosed, refused := one("websocket opened", badClient), one("websocket closed", badClient), one("authentication refused", badClient)
	assert.Equal(t, map[string]any{"level": "INFO", "code": 4403.0, "by": "server"}, pick(badClosed, "level", "code", "by"), "closed for the client's fault: info")
	assert.Equal(t, map[string]any{"level": "INFO", "reason": "invalid token"}, pick(refused, "level", "reason"))
	assert.Equal(t, badOpened["request_id"], badClosed["request_id"])
	assert.Equal(t, badOpened["request_id"], refused["request_id"])

	statusHits := linesOf(lines, "rate limit hit", "path", "postStatus")
	require.NotEmpty(t, statusHits)
	assert.Equal(t, "INFO", statusHits[0]["level"])
	assert.NotEmpty(t, statusHits[0]["client"])
}

// pick returns the fields keys of a log line.
func pick(rec map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		out[k] = rec[k]
	}
	return out
}
