package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// ---- Servers: in-process (startServer) or as processes (startProcess), tokens ----

// TestMain doubles as a server: with SWITCHBOARD_TEST_SERVE=1 the test binary
// serves as the switchboard binary does (configured by its environment,
// stopped by SIGTERM), so tests can start several real server processes
// sharing one database, and kill them.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHBOARD_TEST_SERVE") == "1" {
		os.Exit(serve())
	}
	code := m.Run()
	if code == 0 {
		// Every server the tests started has stopped: nothing of theirs may
		// still run (subscriptions, hubs, connections).
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// serve is the test binary in server mode: main's work, without its
// subcommands.
func serve() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := app.ParseConfig(nil, os.Getenv, os.Stderr)
	if wait := os.Getenv("SWITCHBOARD_TEST_FOLLOW_WAIT"); err == nil && wait != "" {
		cfg.FollowWait, err = time.ParseDuration(wait) // app.Config.FollowWait
	}
	if err == nil {
		err = app.Run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testServer is a server started for one test, in-process or as a process.
type testServer struct {
	URL  string // http://127.0.0.1:port
	stop func()
	kill func() // kills a server process as a crash would (startProcess only)
	pid  int    // the server process's (startProcess only)
	logs *testenv.Buffer
	env  map[string]string // the settings it started with
}

// mintToken mints a token for a new user named name with roles, valid for
// ttl, signed with the server's key (as the token subcommand does: with the
// server's storage settings).
func (s *testServer) mintToken(tb testing.TB, name string, ttl time.Duration, roles ...models.Role) string {
	tb.Helper()
	cfg, err := app.ParseConfig(nil, func(k string) string { return s.env[k] }, io.Discard)
	require.NoError(tb, err)
	token, err := app.MintToken(tb.Context(), cfg, name, roles, ttl)
	require.NoError(tb, err)
	return token
}

// testSecret is the AUTH_SECRET of production servers in tests.
const testSecret = "e2e-test-secret-e2e-test-secret-e2e-test-secret"

// withProductionSecret gives a production server's settings vars the
// AUTH_SECRET it needs to start, unless they name one (even empty: a test
// of its absence).
func withProductionSecret(vars map[string]string) {
	if _, ok := vars["AUTH_SECRET"]; !ok && strings.EqualFold(vars["ENV"], "production") {
		vars["AUTH_SECRET"] = testSecret
	}
}

// tokenCommand runs the token subcommand (args after "token") on the
// server's storage settings and returns what it printed to stdout and
// stderr.
func (s *testServer) tokenCommand(tb testing.TB, args ...string) (stdout, stderr string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err := app.TokenCommand(tb.Context(), args, func(k string) string { return s.env[k] }, &out, &errOut)
	require.NoError(tb, err, "token %q: %s", args, errOut.String())
	return out.String(), errOut.String()
}

// claims are the parts of a token's payload the tests look at.
type claims struct {
	Exp     int64    `json:"exp"`
	Roles   []string `json:"roles"`
	Session string   `json:"sid"`
}

// Expires is when the token expires.
func (c claims) Expires() time.Time { return time.Unix(c.Exp, 0).UTC() }

// claimsOf decodes a token's payload (without checking its signature: the
// server does that).
func claimsOf(tb testing.TB, token string) claims {
	tb.Helper()
	parts := strings.Split(token, ".")
	require.Len(tb, parts, 3, "a JWT")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(tb, err)
	var c claims
	require.NoError(tb, json.Unmarshal(raw, &c))
	return c
}

// WS returns the server's WebSocket endpoint.
func (s *testServer) WS() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/graphql" }

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

// scanLogs copies a server's log lines into logs and sends the address of
// its "listening" line (text or JSON) on the returned channel.
func scanLogs(r io.Reader, logs *testenv.Buffer) <-chan string {
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = logs.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				addr <- m[1] + m[2]
			}
		}
	}()
	return addr
}

// startServer runs the server in-process on a free port with env as its
// whole environment (DATA_DIR defaults to a temporary directory). It stops
// when the test ends, or when stop is called.
func startServer(tb testing.TB, env map[string]string) *testServer {
	tb.Helper()
	return startServerWith(tb, env, nil)
}

// startServerWith is startServer, with configure (if not nil) changing the
// parsed configuration before the server starts (for what only tests set,
// such as app.Config.InjectPanic).
func startServerWith(tb testing.TB, env map[string]string, configure func(*app.Config)) *testServer {
	tb.Helper()
	vars := map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": tb.TempDir(), "LOG_LEVEL": "debug"}
	maps.Copy(vars, env)
	withProductionSecret(vars)
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	require.NoError(tb, err)
	if configure != nil {
		configure(cfg)
	}
	logs := &testenv.Buffer{}
	srv, err := app.Start(tb.Context(), cfg, logs)
	require.NoError(tb, err, "server did not start\n%s", logs)
	s := &testServer{URL: srv.URL(), logs: logs, env: vars}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				tb.Errorf("server stopped with error: %v", err)
			}
		})
	}
	tb.Cleanup(s.stop)
	return s
}

// startProcess runs the server as a separate OS process (this test binary
// in server mode) with env added to the environment.
func startProcess(tb testing.TB, env map[string]string) *testServer {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	vars := map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": tb.TempDir()}
	maps.Copy(vars, env)
	withProductionSecret(vars)
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_SERVE=1")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	require.NoError(tb, cmd.Start())
	addr := scanLogs(out, logs)
	s := &testServer{logs: logs, env: vars, pid: cmd.Process.Pid}
	var once sync.Once
	s.kill = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	s.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM) // what process managers and Kubernetes send
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				tb.Errorf("server process did not stop within 15s")
			}
		})
	}
	tb.Cleanup(s.stop)
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-time.After(60 * time.Second):
		tb.Fatalf("server process did not start within 60s\n%s", logs.String())
	}
	return s
}

// ---- GraphQL over HTTP: operations, users, statuses ----

// gqlResponse is a GraphQL response over HTTP.
type gqlResponse struct {
	Status int
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) Code() string { s, _ := e.Extensions["code"].(string); return s }

// do posts a GraphQL operation with an optional bearer token.
func (s *testServer) do(tb testing.TB, token, query string, vars map[string]any) gqlResponse {
	tb.Helper()
	out, _ := s.doFrom(tb, "", token, query, vars)
	return out
}

// doFrom is do as the client at address from ("" for none) whose request
// comes through a trusted proxy (X-Forwarded-For; the server needs
// TRUSTED_PROXIES=127.0.0.1); it returns the response's headers too.
func (s *testServer) doFrom(tb testing.TB, from, token, query string, vars map[string]any) (gqlResponse, http.Header) {
	tb.Helper()
	header := http.Header{}
	if from != "" {
		header.Set("X-Forwarded-For", from)
	}
	return s.doWith(tb, token, query, vars, header)
}

// doWith is do with the fields of header added to the request; it returns
// the response's headers too.
func (s *testServer) doWith(tb testing.TB, token, query string, vars map[string]any, header http.Header) (gqlResponse, http.Header) {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(tb, err)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	var out gqlResponse
	raw, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.NoError(tb, json.Unmarshal(raw, &out), "response: %s", raw)
	out.Status = resp.StatusCode
	return out, resp.Header
}

// mustDo is do that fails the test on GraphQL errors and decodes data into v.
func (s *testServer) mustDo(tb testing.TB, token, query string, vars map[string]any, v any) {
	tb.Helper()
	r := s.do(tb, token, query, vars)
	require.Empty(tb, r.Errors, "query %s", query)
	if v != nil {
		require.NoError(tb, json.Unmarshal(r.Data, v))
	}
}

// signIn returns a guest token for name.
func (s *testServer) signIn(tb testing.TB, name string) string {
	tb.Helper()
	var d struct {
		SignIn struct{ Token string } `json:"signIn"`
	}
	s.mustDo(tb, "", `mutation($n: String!) { signIn(name: $n) { token } }`, map[string]any{"n": name}, &d)
	return d.SignIn.Token
}

type status struct {
	ID        string `json:"id"`
	Text      string `json:"text"`
	CreatedAt string `json:"createdAt"`
	Author    struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"author"`
}

const statusFields = `id text createdAt author { id name }`

// post posts a status and returns it.
func (s *testServer) post(tb testing.TB, token, text string) status {
	tb.Helper()
	var d struct{ PostStatus status }
	s.mustDo(tb, token, `mutation($t: String!) { postStatus(text: $t) { `+statusFields+` } }`, map[string]any{"t": text}, &d)
	return d.PostStatus
}

// statusTexts returns the texts of the newest statuses, newest first.
func (s *testServer) statusTexts(tb testing.TB) []string {
	tb.Helper()
	var d struct {
		Statuses struct{ Edges []struct{ Node status } }
	}
	s.mustDo(tb, "", `{ statuses(first: 50) { edges { node { `+statusFields+` } } } }`, nil, &d)
	var texts []string
	for _, e := range d.Statuses.Edges {
		texts = append(texts, e.Node.Text)
	}
	return texts
}

// ---- WebSocket clients: both protocols, frame by frame ----

// wsClient is a raw WebSocket client speaking one subprotocol.
type wsClient struct {
	tb   testing.TB
	conn *websocket.Conn
}

// dialWS opens a WebSocket to s offering subprotocol ("" offers none).
func dialWS(tb testing.TB, s *testServer, subprotocol string, header http.Header) *wsClient {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if subprotocol != "" {
		d.Subprotocols = []string{subprotocol}
	}
	conn, resp, err := d.Dial(s.WS(), header)
	require.NoError(tb, err)
	_ = resp.Body.Close()
	tb.Cleanup(func() { _ = conn.Close() })
	return &wsClient{tb: tb, conn: conn}
}

type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (c *wsClient) send(typ, id string, payload any) {
	c.tb.Helper()
	m := map[string]any{"type": typ}
	if id != "" {
		m["id"] = id
	}
	if payload != nil {
		m["payload"] = payload
	}
	require.NoError(c.tb, c.conn.WriteJSON(m))
}

// read returns the next message other than keepalives (ka, ping, pong),
// answering pings; it fails the test after timeout.
func (c *wsClient) read(timeout time.Duration) wsMessage {
	c.tb.Helper()
	m, err := c.tryRead(timeout)
	require.NoError(c.tb, err)
	return m
}

func (c *wsClient) tryRead(timeout time.Duration) (wsMessage, error) {
	deadline := time.Now().Add(timeout)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		var m wsMessage
		if err := c.conn.ReadJSON(&m); err != nil {
			return wsMessage{}, err
		}
		switch m.Type {
		case "ka", "pong":
			continue
		case "ping":
			_ = c.conn.WriteJSON(map[string]any{"type": "pong"})
			continue
		}
		return m, nil
	}
}

// closeCode waits for the server's close frame and returns its code and
// reason.
func (c *wsClient) closeCode(timeout time.Duration) (int, string) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		c.tb.Fatalf("connection ended without a close frame: %v", err)
		return 0, ""
	}
}

// freeLoopbackAddr returns a loopback address whose port is free at the time
// of the call, so that a server can be restarted on the same address.
func freeLoopbackAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := ln.Addr().String()
	require.NoError(tb, ln.Close())
	return addr
}

// init performs connection_init with an optional token and returns the ack.
func (c *wsClient) init(token string) wsMessage {
	c.tb.Helper()
	payload := map[string]any{}
	if token != "" {
		payload["authorization"] = "Bearer " + token
	}
	c.send("connection_init", "", payload)
	m := c.read(5 * time.Second)
	require.Equal(c.tb, "connection_ack", m.Type, "payload: %s", m.Payload)
	return m
}

// subscribe starts an operation: subscribe on graphql-transport-ws, start on
// the legacy protocol.
func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	c.tb.Helper()
	typ := "subscribe"
	if c.conn.Subprotocol() != "graphql-transport-ws" {
		typ = "start"
	}
	c.send(typ, id, map[string]any{"query": query, "variables": vars})
}

// nextStatus reads the next event of operation id as a status.
func (c *wsClient) nextStatus(id string, timeout time.Duration) status {
	c.tb.Helper()
	m := c.read(timeout)
	require.Contains(c.tb, []string{"next", "data"}, m.Type, "message %s %s", m.Type, m.Payload)
	require.Equal(c.tb, id, m.ID)
	var p struct {
		Data struct {
			StatusPosted status `json:"statusPosted"`
		} `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	require.NoError(c.tb, json.Unmarshal(m.Payload, &p))
	require.Empty(c.tb, p.Errors)
	return p.Data.StatusPosted
}

// ---- Chat: users, rooms, messages, presence, typing ----

type room struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Direct      bool   `json:"direct"`
	UnreadCount int    `json:"unreadCount"`
}

const roomFields = `id name direct unreadCount`

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// chatUser is a signed-in guest.
type chatUser struct {
	user
	token string
}

func (s *testServer) chatUser(tb testing.TB, name string) chatUser {
	tb.Helper()
	var d struct {
		SignIn struct {
			Token string
			User  user
		} `json:"signIn"`
	}
	s.mustDo(tb, "", `mutation($n: String!) { signIn(name: $n) { token user { id name } } }`, map[string]any{"n": name}, &d)
	return chatUser{user: d.SignIn.User, token: d.SignIn.Token}
}

func (s *testServer) createRoom(tb testing.TB, token, name string) room {
	tb.Helper()
	var d struct{ CreateRoom room }
	s.mustDo(tb, token, `mutation($n: String!) { createRoom(name: $n) { `+roomFields+` } }`, map[string]any{"n": name}, &d)
	return d.CreateRoom
}

func (s *testServer) openDirect(tb testing.TB, token, userID string) room {
	tb.Helper()
	var d struct{ OpenDirectRoom room }
	s.mustDo(tb, token, `mutation($u: ID!) { openDirectRoom(userId: $u) { `+roomFields+` } }`, map[string]any{"u": userID}, &d)
	return d.OpenDirectRoom
}

func (s *testServer) postMessage(tb testing.TB, token, roomID, text string) string {
	tb.Helper()
	var d struct{ PostMessage event }
	s.mustDo(tb, token, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id text } }`,
		map[string]any{"r": roomID, "t": text}, &d)
	return d.PostMessage.ID
}

func (s *testServer) generalRoom(tb testing.TB) room {
	tb.Helper()
	named := s.generalRoomsNamed(tb)
	require.NotEmpty(tb, named, "a fresh install has a general room")
	return named[0]
}

// generalRoomsNamed returns the public rooms named general.
func (s *testServer) generalRoomsNamed(tb testing.TB) []room {
	tb.Helper()
	var out []room
	for _, r := range s.rooms(tb, "", "general") {
		if r.Name == "general" {
			out = append(out, r)
		}
	}
	return out
}

// roomPage is one page of a room list.
type roomPage struct {
	Edges []struct {
		Cursor string
		Node   room
	}
	PageInfo struct {
		HasNextPage bool
		EndCursor   string
	}
}

// roomPageQuery asks for a page of the caller's room list.
const roomPageQuery = `query($first: Int, $after: String, $search: String) {
  rooms(first: $first, after: $after, search: $search) { edges { cursor node { ` + roomFields + ` } } pageInfo { hasNextPage endCursor } }
}`

// roomPage returns a page of token's room list: first rooms after cursor
// after ("": the first page) whose name contains search ("": all).
func (s *testServer) roomPage(tb testing.TB, token string, first int, after, search string) roomPage {
	tb.Helper()
	vars := map[string]any{"first": first}
	if after != "" {
		vars["after"] = after
	}
	if search != "" {
		vars["search"] = search
	}
	var d struct{ Rooms roomPage }
	s.mustDo(tb, token, roomPageQuery, vars, &d)
	return d.Rooms
}

// rooms returns the first 100 rooms of token's room list whose name
// contains search ("": all), in list order.
func (s *testServer) rooms(tb testing.TB, token, search string) []room {
	tb.Helper()
	page := s.roomPage(tb, token, 100, "", search)
	out := make([]room, len(page.Edges))
	for i, e := range page.Edges {
		out[i] = e.Node
	}
	return out
}

// chatWS opens a graphql-transport-ws connection initialised with token.
func (s *testServer) chatWS(tb testing.TB, token string) *wsClient {
	tb.Helper()
	c := dialWS(tb, s, "graphql-transport-ws", nil)
	c.init(token)
	return c
}

// nextData reads the next event of operation id (next, or data in the
// legacy protocol) and decodes its field into v; it fails on errors.
func (c *wsClient) nextData(id, field string, v any, timeout time.Duration) {
	c.tb.Helper()
	m := c.read(timeout)
	require.Contains(c.tb, []string{"next", "data"}, m.Type, "message %s %s", m.Type, m.Payload)
	require.Equal(c.tb, id, m.ID)
	var p struct {
		Data   map[string]json.RawMessage `json:"data"`
		Errors []gqlError                 `json:"errors"`
	}
	require.NoError(c.tb, json.Unmarshal(m.Payload, &p))
	require.Empty(c.tb, p.Errors)
	require.NoError(c.tb, json.Unmarshal(p.Data[field], v))
}

// until reads events of operation id into a fresh T until done accepts
// one, and returns it; events before it (intermediate latest values) are
// skipped.
func until[T any](c *wsClient, id, field string, timeout time.Duration, done func(T) bool) T {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	var seen []T
	for time.Now().Before(deadline) {
		var v T
		c.nextData(id, field, &v, time.Until(deadline))
		if done(v) {
			return v
		}
		seen = append(seen, v)
	}
	c.tb.Fatalf("no %s event as expected within %s; saw %+v", field, timeout, seen)
	var zero T
	return zero
}

// primed waits for the first event of operation id while trigger runs every
// 100 ms: a subscription starts asynchronously, so this proves it runs
// before a test relies on it. It returns the first event's data field.
func primed[T any](c *wsClient, id, field string, trigger func()) T {
	c.tb.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			trigger()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var v T
	c.nextData(id, field, &v, 10*time.Second)
	close(stop)
	<-done
	return v
}

type presence struct {
	RoomID string `json:"roomId"`
	Users  []user `json:"users"`
}

func names(us []user) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Name
	}
	return out
}

type typingEvent struct {
	RoomID    string `json:"roomId"`
	User      user   `json:"user"`
	Typing    bool   `json:"typing"`
	ExpiresAt string `json:"expiresAt"`
}

// operationError reads the error message of operation id.
func (c *wsClient) operationError(id string) gqlError {
	c.tb.Helper()
	m := c.read(5 * time.Second)
	require.Equal(c.tb, "error", m.Type, "%s", m.Payload)
	require.Equal(c.tb, id, m.ID)
	var errs []gqlError
	require.NoError(c.tb, json.Unmarshal(m.Payload, &errs))
	require.Len(c.tb, errs, 1)
	return errs[0]
}

// rawRead returns the next message as it is, keepalives included.
func (c *wsClient) rawRead(timeout time.Duration) wsMessage {
	c.tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	var m wsMessage
	require.NoError(c.tb, c.conn.ReadJSON(&m))
	return m
}

// history returns a room's latest 100 messages as the server has them,
// oldest first, in the page's terms.
func (s *testServer) history(tb testing.TB, token, roomID string) []feedItem {
	tb.Helper()
	var d struct {
		Messages struct {
			Edges []struct {
				Node struct {
					ID     string
					Text   string
					Author struct{ Name string }
				}
			}
		}
	}
	s.mustDo(tb, token, `query($r: ID!) { messages(roomId: $r, last: 100) { edges { node { id text author { name } } } } }`,
		map[string]any{"r": roomID}, &d)
	items := make([]feedItem, 0, len(d.Messages.Edges))
	for _, e := range d.Messages.Edges {
		items = append(items, feedItem{ID: e.Node.ID, Author: e.Node.Author.Name, Text: e.Node.Text})
	}
	return items
}

// unreadCounts returns the caller's unread count of every room of the
// first 100 of its list.
func (s *testServer) unreadCounts(tb testing.TB, token string) map[string]int {
	tb.Helper()
	rooms := s.rooms(tb, token, "")
	counts := make(map[string]int, len(rooms))
	for _, r := range rooms {
		counts[r.ID] = r.UnreadCount
	}
	return counts
}

// ---- KPIs and notifications: a server with admin and publisher tokens ----

// opsServer is a server with an operator token for each role set.
type opsServer struct {
	*testServer
	admin, publisher string
}

// startOpsServer starts a server (env added to a fresh DATA_DIR) and mints
// an admin and a publisher token with the token subcommand.
func startOpsServer(t *testing.T, env map[string]string) *opsServer {
	t.Helper()
	vars := map[string]string{"DATA_DIR": t.TempDir(), "DEMO_FEED": "false"}
	for k, v := range env {
		vars[k] = v
	}
	s := startServer(t, vars)
	day := 24 * time.Hour
	return &opsServer{testServer: s, admin: s.mintToken(t, "ops", day, models.RoleAdmin), publisher: s.mintToken(t, "feeder", day, models.RolePublisher)}
}

type kpiValue struct {
	Module string   `json:"module"`
	Key    string   `json:"key"`
	Label  string   `json:"label"`
	Value  float64  `json:"value"`
	Unit   string   `json:"unit"`
	Change *float64 `json:"change"`
}

const kpiFields = `module key label value unit change`

func (s *opsServer) record(tb testing.TB, token string, inputs ...map[string]any) gqlResponse {
	tb.Helper()
	return s.do(tb, token, `mutation($in: [KPIInput!]!) { recordKPIs(inputs: $in) { `+kpiFields+` } }`, map[string]any{"in": inputs})
}

func (s *opsServer) moduleKPIs(tb testing.TB, module string) []kpiValue {
	tb.Helper()
	var d struct{ ModuleKPIs []kpiValue }
	s.mustDo(tb, "", `query($m: String!) { moduleKPIs(module: $m) { `+kpiFields+` } }`, map[string]any{"m": module}, &d)
	return d.ModuleKPIs
}

func kv(module, key string, value any) map[string]any {
	return map[string]any{"module": module, "key": key, "value": value}
}

type notification struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Read      bool   `json:"read"`
	Broadcast bool   `json:"broadcast"`
}

const notificationFields = `id title read broadcast`

func (s *opsServer) send(tb testing.TB, to *chatUser, title string) notification {
	tb.Helper()
	in := map[string]any{"title": title}
	if to != nil {
		in["userId"] = to.ID
	}
	var d struct{ SendNotification notification }
	s.mustDo(tb, s.admin, `mutation($in: NotificationInput!) { sendNotification(input: $in) { `+notificationFields+` } }`, map[string]any{"in": in}, &d)
	return d.SendNotification
}

func (s *opsServer) inbox(tb testing.TB, token string) []notification {
	tb.Helper()
	var d struct {
		Notifications struct{ Edges []struct{ Node notification } }
	}
	s.mustDo(tb, token, `{ notifications(first: 100) { edges { node { `+notificationFields+` } } } }`, nil, &d)
	out := make([]notification, len(d.Notifications.Edges))
	for i, e := range d.Notifications.Edges {
		out[i] = e.Node
	}
	return out
}

// recordKPI records one KPI value (a KPIInput) through the API.
func (s *testServer) recordKPI(tb testing.TB, token string, input map[string]any) {
	tb.Helper()
	s.mustDo(tb, token, `mutation($in: [KPIInput!]!) { recordKPIs(inputs: $in) { key } }`, map[string]any{"in": []any{input}}, nil)
}

// sendNotification sends a notification (a NotificationInput) through the
// API and returns its id.
func (s *testServer) sendNotification(tb testing.TB, token string, input map[string]any) string {
	tb.Helper()
	var d struct{ SendNotification struct{ ID string } }
	s.mustDo(tb, token, `mutation($in: NotificationInput!) { sendNotification(input: $in) { id } }`, map[string]any{"in": input}, &d)
	return d.SendNotification.ID
}

// unreadCount returns the caller's unread notification count.
func (s *testServer) unreadCount(tb testing.TB, token string) int {
	tb.Helper()
	var d struct{ UnreadCount int }
	s.mustDo(tb, token, `query { unreadCount }`, nil, &d)
	return d.UnreadCount
}

// ---- Durable streams: resuming with after under concurrent posters, replicas ----

// durableFeed describes a durable stream for checkResume: how to post to
// it and how to follow it with after.
type durableFeed struct {
	// subscription selects `id text` of field, resuming after $a.
	subscription string
	field        string
	vars         map[string]any
	// token signs the subscribers in, when the feed needs it; poster is the
	// token posts are made with (default: a guest's).
	token, poster string
	post          func(tb testing.TB, s *testServer, token, text string) (id string)
	// position reads an event's position in its stream from its id.
	position func(id string) (int, error)
}

var statusFeed = durableFeed{
	subscription: `subscription($a: ID) { statusPosted(after: $a) { id text } }`,
	field:        "statusPosted",
	post:         func(tb testing.TB, s *testServer, token, text string) string { return s.post(tb, token, text).ID },
	position:     strconv.Atoi,
}

// messageFeed is the durable feed of room roomID's messages.
func messageFeed(roomID string) durableFeed {
	return durableFeed{
		subscription: `subscription($r: ID!, $a: ID) { messageAdded(roomId: $r, after: $a) { id text } }`,
		field:        "messageAdded",
		vars:         map[string]any{"r": roomID},
		post: func(tb testing.TB, s *testServer, token, text string) string {
			return s.postMessage(tb, token, roomID, text)
		},
		position: func(id string) (int, error) {
			room, seq, ok := strings.Cut(id, ":")
			if !ok || room != roomID {
				return 0, fmt.Errorf("message id %q is not of room %s", id, roomID)
			}
			return strconv.Atoi(seq)
		},
	}
}

// event is an event of a durable feed.
type event struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// checkResume posts posters×each statuses concurrently, spread over the
// posting servers, while one subscriber per subscribing server disconnects
// and resumes over and over; each must end with every status, in order,
// exactly once.
func checkResume(t *testing.T, feed durableFeed, posting, subscribing []*testServer, posters, each int) {
	total := posters * each
	token := feed.poster
	if token == "" {
		token = posting[0].signIn(t, "poster")
	}

	var (
		mu       sync.Mutex
		postedID = map[string]string{} // text → id
	)
	var posts sync.WaitGroup
	for p := range posters {
		s := posting[p%len(posting)]
		posts.Go(func() {
			for i := range each {
				// Pace the posters so that the subscribers spend most of the
				// run following live rather than replaying.
				time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
				text := fmt.Sprintf("p%d-%d", p, i)
				id := feed.post(t, s, token, text)
				mu.Lock()
				postedID[text] = id
				mu.Unlock()
			}
		})
	}

	type result struct {
		got        []event
		reconnects int
		err        error
	}
	results := make([]result, len(subscribing))
	var subs sync.WaitGroup
	for i, s := range subscribing {
		subs.Go(func() {
			got, reconnects, err := resumingSubscriber(s, feed, total, 90*time.Second)
			results[i] = result{got, reconnects, err}
		})
	}
	posts.Wait()
	subs.Wait()

	require.Len(t, postedID, total)
	ids := make([]int, 0, total)
	for _, id := range postedID {
		n, err := feed.position(id)
		require.NoError(t, err)
		ids = append(ids, n)
	}
	slices.Sort(ids)
	for i, id := range ids {
		require.Equal(t, i+1, id, "ids are handed out without gaps")
	}
	for i, r := range results {
		require.NoError(t, r.err, "subscriber %d", i)
		require.Len(t, r.got, total, "subscriber %d", i)
		for j, ev := range r.got {
			n, err := feed.position(ev.ID)
			require.NoError(t, err)
			require.Equal(t, j+1, n, "subscriber %d, event %d: in order, no gap, no duplicate", i, j)
			require.Equal(t, postedID[ev.Text], ev.ID, "subscriber %d: the event is the one that was posted", i)
		}
		assert.Greater(t, r.reconnects, 5, "subscriber %d resumed several times", i)
		t.Logf("subscriber %d received %d events over %d connections", i, len(r.got), r.reconnects)
	}
}

// resumingSubscriber collects want events of feed from s, dropping its connection
// after a random number of events (sometimes cleanly, sometimes abruptly) and
// resuming with the last id it saw. It reports a broken promise as an error.
func resumingSubscriber(s *testServer, feed durableFeed, want int, limit time.Duration) ([]event, int, error) {
	deadline := time.Now().Add(limit)
	var got []event
	var last *string
	connections := 0
	for len(got) < want {
		if time.Now().After(deadline) {
			return got, connections, fmt.Errorf("received %d of %d within %s", len(got), want, limit)
		}
		connections++
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
		conn, _, err := d.Dial(s.WS(), nil)
		if err != nil {
			return got, connections, fmt.Errorf("dial: %w", err)
		}
		batch := 1 + rand.IntN(15)
		err = func() error {
			defer conn.Close()
			initPayload := map[string]any{}
			if feed.token != "" {
				initPayload["authorization"] = "Bearer " + feed.token
			}
			if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": initPayload}); err != nil {
				return err
			}
			vars := map[string]any{"a": "0"}
			if last != nil {
				vars["a"] = *last
			}
			maps.Copy(vars, feed.vars)
			if err := conn.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
				"query": feed.subscription, "variables": vars,
			}}); err != nil {
				return err
			}
			for n := 0; n < batch && len(got) < want; {
				_ = conn.SetReadDeadline(deadline)
				var m wsMessage
				if err := conn.ReadJSON(&m); err != nil {
					return fmt.Errorf("read after %d events: %w", len(got), err)
				}
				switch m.Type {
				case "connection_ack", "pong":
					continue
				case "ping":
					_ = conn.WriteJSON(map[string]any{"type": "pong"})
					continue
				case "next":
				default:
					return fmt.Errorf("unexpected %s: %s", m.Type, m.Payload)
				}
				var p struct {
					Data map[string]event `json:"data"`
				}
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					return err
				}
				ev := p.Data[feed.field]
				pos, err := feed.position(ev.ID)
				if err != nil || pos != len(got)+1 {
					return fmt.Errorf("event %d came with id %q", len(got)+1, ev.ID)
				}
				got = append(got, ev)
				last = &ev.ID
				n++
			}
			if rand.IntN(2) == 0 {
				_ = conn.WriteJSON(map[string]any{"type": "complete", "id": "1"})
				_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			}
			return nil
		}()
		if err != nil {
			return got, connections, err
		}
	}
	return got, connections, nil
}

// startReplicas starts n servers sharing a fresh MySQL database and the
// Redis at redisURL, the first with operator tokens. Their per-user limits
// are off: the replica tests drive many clients as one user, from one
// address.
func startReplicas(t *testing.T, n int, redisURL string) (*opsServer, []*testServer) {
	t.Helper()
	return startReplicasOn(t, n, redisURL, storetest.MySQLURL(t))
}

// startReplicasOn is startReplicas on the database of dbURL.
func startReplicasOn(t *testing.T, n int, redisURL, dbURL string) (*opsServer, []*testServer) {
	t.Helper()
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "DASHBOARD_INTERVAL": "200ms",
		"LIMIT_MESSAGES": "0", "LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0", "LIMIT_CONNS_PER_USER": "0", "LIMIT_ROOMS": "0"}
	first := startOpsServer(t, env)
	all := []*testServer{first.testServer}
	for range n - 1 {
		all = append(all, startServer(t, env))
	}
	for _, s := range all {
		assert.Contains(t, s.logs.String(), "broker=redis", "the replica uses Redis")
	}
	return first, all
}

// getJSON decodes the JSON body of a GET of url into v.
func getJSON(tb testing.TB, url string, v any) {
	tb.Helper()
	resp, err := http.Get(url)
	require.NoError(tb, err)
	defer resp.Body.Close()
	require.NoError(tb, json.NewDecoder(resp.Body).Decode(v))
}

// ---- Metrics and logs ----

// scrape returns the server's /metrics page.
func (s *testServer) scrape(tb testing.TB) string {
	tb.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	require.NoError(tb, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return string(body)
}

// metric returns the value of one sample of the server's /metrics: a name
// with its labels as Prometheus prints them (switchboard_errors_total or
// switchboard_errors_total{code="INTERNAL"}), 0 when the sample is absent
// (a labelled counter that has not counted yet).
func (s *testServer) metric(tb testing.TB, sample string) float64 {
	tb.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(s.scrape(tb))
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(tb, err)
	return v
}

// waitMetric waits (up to 5 s) for a metric to reach want: what it counts
// changes right after the event the test observed.
func waitMetric(t *testing.T, s *testServer, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.metric(t, name) != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, want, s.metric(t, name), name)
}

// idleStatements waits until the server's database statements are still
// (see testenv.Idle) and returns their count.
func (s *testServer) idleStatements(t *testing.T) float64 {
	t.Helper()
	return testenv.Idle(t, func() float64 { return s.metric(t, `switchboard_database_statements_total`) })
}

// logsOnFailure prints the server's log when the test fails.
func (s *testServer) logsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server %s logs:\n%s", s.URL, s.logs.String())
		}
	})
}

// databases are the backends the end-to-end suites that test every
// database run on: the embedded SQLite, and a fresh MySQL or PostgreSQL
// database on the servers of TEST_MYSQL_URL and TEST_POSTGRES_URL.
var databases = []store.Dialect{store.SQLite, store.MySQL, store.Postgres}

// withDatabase adds the DATABASE_URL of a fresh database of dialect to env
// (none for SQLite: the server's embedded default) and returns env.
func withDatabase(t *testing.T, dialect store.Dialect, env map[string]string) map[string]string {
	t.Helper()
	if dialect != store.SQLite {
		env["DATABASE_URL"] = storetest.URL(t, dialect)
	}
	return env
}
