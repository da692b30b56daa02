package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/models"
)

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
	logs *syncBuffer
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

// WS returns the server's WebSocket endpoint.
func (s *testServer) WS() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/graphql" }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

// scanLogs copies a server's log lines into logs and sends the address of
// its "listening" line (text or JSON) on the returned channel.
func scanLogs(r io.Reader, logs *syncBuffer) <-chan string {
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
	vars := map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": tb.TempDir(), "LOG_LEVEL": "debug"}
	maps.Copy(vars, env)
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	require.NoError(tb, err)
	logs := &syncBuffer{}
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
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_SERVE=1")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	require.NoError(tb, cmd.Start())
	addr := scanLogs(out, logs)
	s := &testServer{logs: logs, env: vars}
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
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(tb, err)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	var out gqlResponse
	raw, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.NoError(tb, json.Unmarshal(raw, &out), "response: %s", raw)
	out.Status = resp.StatusCode
	return out
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
