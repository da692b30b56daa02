package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// Bounds of the graphql-ws client tests.
const (
	jsClientRunTimeout  = 20 * time.Second // one node process, start to exit (its own hard timeout is 15 s)
	jsClientStepTimeout = 10 * time.Second // one expected event
)

// TestGraphQLWSClient drives the real graphql-ws client (createClient, on the
// ws package, through e2e/jsclient/client.mjs) against the server, one
// scenario per kind of close code: the standard client must come back after
// the codes docs/protocol.md says it comes back after (1001, 1013, 4403,
// 4408) and give up after the others (4409 here).
func TestGraphQLWSClient(t *testing.T) {
	node, script := requireJSClient(t)
	scenarios := []struct {
		name string
		run  func(t *testing.T, node, script string)
	}{
		{name: "going away is retried and the client resumes after a restart", run: jsClientResumesAfterRestart},
		{name: "going away with the default retry rule", run: jsClientGoingAwayDefaultRule},
		{name: "4403 is retried until the client's attempts run out", run: jsClientForbiddenRetried},
		{name: "4409 is fatal", run: jsClientDuplicateIDFatal},
		{name: "4409 for a long id is a 4409 too", run: jsClientLongDuplicateIDFatal},
		{name: "4408 is retried", run: jsClientInitTimeoutRetried},
		{name: "1013 for too many connections of a user is retried until a place is free", run: jsClientTooManyConnectionsRetried},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, node, script) })
	}
}

// jsClientResumesAfterRestart: when the server goes away (1001) the client,
// whose default rule retries that close, keeps reconnecting until the
// server is back on the same address and database; its subscription then
// resumes after the last status it saw, so every status arrives exactly
// once, in order, across the restart.
func jsClientResumesAfterRestart(t *testing.T, node, script string) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "ADDR": freeLoopbackAddr(t)}
	s1 := startServer(t, env)
	s1.logsOnFailure(t)
	token := s1.signIn(t, "Jess")
	posted := []status{s1.post(t, token, "one")}

	c := startJSClient(t, node, script, "--url", s1.WS(), "--token", token, "--scenario", "resume", "--want", "4")
	// The status posted before subscribing arrives (replayed from after "0");
	// after it the subscription is live.
	c.requireNext(t, "status", posted[0])
	for _, text := range []string{"two", "three"} {
		st := s1.post(t, token, text)
		posted = append(posted, st)
		c.requireNext(t, "status", st)
	}

	s1.stop()
	closed := c.waitFor(t, "the close", func(e jsEvent) bool { return e.Event == "closed" })
	assert.Equal(t, 1001, closed.Code, "reason %q", closed.Reason)
	sr := c.waitFor(t, "shouldRetry for the close", func(e jsEvent) bool { return e.Event == "should_retry" })
	assert.Equal(t, "close", sr.Kind)
	assert.Equal(t, 1001, sr.Code)
	require.NotNil(t, sr.Default)
	assert.True(t, *sr.Default, "the library's default rule retries 1001")
	c.waitFor(t, "a reconnection attempt", func(e jsEvent) bool { return e.Event == "connecting" && e.Retrying })

	// The server comes back on the same address and database; a status
	// posted now must reach the client exactly once, after the others.
	s2 := startServer(t, env)
	s2.logsOnFailure(t)
	posted = append(posted, s2.post(t, token, "four"))
	c.waitFor(t, "the reconnection", func(e jsEvent) bool { return e.Event == "connected" })
	c.requireNext(t, "status", posted[3])
	c.requireEveryStatusOnce(t, posted)
}

// requireEveryStatusOnce waits for the client to finish (done), and checks
// that it received the statuses posted, each once, in order.
func (c *jsClientRun) requireEveryStatusOnce(t *testing.T, posted []status) {
	t.Helper()
	events := c.wait(t)
	assert.Equal(t, "done", events[len(events)-1].Event)
	var got, want []string
	for _, e := range events {
		if e.Event == "next" {
			got = append(got, e.statusID())
		}
	}
	for _, st := range posted {
		want = append(want, st.ID)
	}
	assert.Equal(t, want, got, "every status once, in order, across the restart")
}

// jsClientGoingAwayDefaultRule: with its default shouldRetry the client
// retries 1001 once it has waited, but a socket error (the server still
// down: connection refused) is not a close event, so it gives up then and
// the subscription ends with that error.
func jsClientGoingAwayDefaultRule(t *testing.T, node, script string) {
	s := startServer(t, nil)
	s.logsOnFailure(t)
	token := s.signIn(t, "Gus")
	st := s.post(t, token, "one")
	c := startJSClient(t, node, script, "--url", s.WS(), "--token", token, "--scenario", "going-away")
	c.requireNext(t, "status", st)
	s.stop()
	events := c.wait(t)

	closed := jsAfterFirst(events, func(e jsEvent) bool { return e.Event == "closed" })
	require.NotEmpty(t, closed, "no close: %s", c.dump())
	assert.Equal(t, 1001, closed[0].Code)
	assert.NotEmpty(t, jsAfterFirst(closed, func(e jsEvent) bool { return e.Event == "connecting" && e.Retrying }),
		"the client did not try to reconnect after 1001:\n%s", c.dump())
	var srs []jsEvent
	for _, e := range events {
		if e.Event == "should_retry" {
			srs = append(srs, e)
		}
	}
	require.Len(t, srs, 2, c.dump())
	assert.Equal(t, jsEvent{Event: "should_retry", Kind: "close", Code: 1001, Default: jsBoolPtr(true), Result: jsBoolPtr(true)}, srs[0].comparable())
	assert.Equal(t, "error", srs[1].Kind, "connection refused")
	assert.False(t, *srs[1].Result)
	last := events[len(events)-2]
	assert.Equal(t, "error", last.Event, c.dump())
	assert.Equal(t, "status", last.Sub)
}

// jsClientForbiddenRetried: a forged token is never accepted; each attempt
// is closed with 4403, which the client retries until its retryAttempts
// run out, and the subscription then fails with the last close.
func jsClientForbiddenRetried(t *testing.T, node, script string) {
	s := startServer(t, nil)
	s.logsOnFailure(t)
	c := startJSClient(t, node, script, "--url", s.WS(), "--scenario", "bad-token")
	events := c.wait(t)

	var connecting, closed []jsEvent
	for _, e := range events {
		switch e.Event {
		case "connecting":
			connecting = append(connecting, e)
		case "closed":
			closed = append(closed, e)
		case "connected", "next":
			t.Errorf("a forged token was accepted: %s", e.raw)
		}
	}
	// The first attempt and the script's retryAttempts (2) retries.
	require.Len(t, connecting, 3, c.dump())
	assert.False(t, connecting[0].Retrying)
	assert.True(t, connecting[1].Retrying)
	assert.True(t, connecting[2].Retrying)
	require.Len(t, closed, 3, c.dump())
	for _, e := range closed {
		assert.Equal(t, 4403, e.Code)
		assert.Equal(t, "Forbidden", e.Reason)
	}
	end := events[len(events)-2]
	assert.Equal(t, "error", end.Event, c.dump())
	assert.Equal(t, 4403, end.Code, "the subscription fails with the last close")
}

// jsClientDuplicateIDFatal: a second subscription under an id in use
// closes the connection with 4409, which is fatal: the client neither
// retries nor asks shouldRetry, and both subscriptions fail with 4409.
func jsClientDuplicateIDFatal(t *testing.T, node, script string) {
	checkDuplicateIDFatal(t, node, script, "same-id", "Subscriber for same-id already exists")
}

// jsClientLongDuplicateIDFatal: an id of 128 bytes, too long to quote whole
// in a close frame, still ends the connection with a valid 4409 (its
// reason shortened), not with the 1006 of a malformed close frame.
func jsClientLongDuplicateIDFatal(t *testing.T, node, script string) {
	id := strings.Repeat("x", 128)
	checkDuplicateIDFatal(t, node, script, id, "Subscriber for "+id[:90]+"… already exists")
}

// checkDuplicateIDFatal runs the duplicate-id scenario with id and checks
// the client gives up after one 4409 with reason.
func checkDuplicateIDFatal(t *testing.T, node, script, id, reason string) {
	s := startServer(t, nil)
	s.logsOnFailure(t)
	token := s.signIn(t, "Dot")
	c := startJSClient(t, node, script, "--url", s.WS(), "--token", token, "--scenario", "duplicate-id", "--id", id)
	events := c.wait(t)

	count := map[string]int{}
	errs := map[string]jsEvent{}
	for _, e := range events {
		count[e.Event]++
		if e.Event == "error" {
			errs[e.Sub] = e
		}
		if e.Event == "closed" {
			assert.Equal(t, 4409, e.Code)
			assert.Equal(t, reason, e.Reason)
		}
	}
	assert.Equal(t, 1, count["connecting"], "one connection attempt, no retry:\n%s", c.dump())
	assert.Equal(t, 1, count["connected"], c.dump())
	assert.Equal(t, 1, count["closed"], c.dump())
	assert.Zero(t, count["retry"], c.dump())
	assert.Zero(t, count["should_retry"], "a fatal code does not even reach shouldRetry:\n%s", c.dump())
	for _, sub := range []string{"first", "second"} {
		if assert.Contains(t, errs, sub, "subscription %s did not fail:\n%s", sub, c.dump()) {
			assert.Equal(t, 4409, errs[sub].Code)
		}
	}
}

// jsClientInitTimeoutRetried: a client whose first connection_init comes
// too late is closed with 4408 and reconnects, and its operation then
// runs on the new connection and completes.
func jsClientInitTimeoutRetried(t *testing.T, node, script string) {
	s := startServer(t, nil)
	s.logsOnFailure(t)
	c := startJSClient(t, node, script, "--url", s.WS(), "--scenario", "init-timeout")
	events := c.wait(t)

	closed := jsAfterFirst(events, func(e jsEvent) bool { return e.Event == "closed" })
	require.NotEmpty(t, closed, "no close: %s", c.dump())
	assert.Equal(t, 4408, closed[0].Code)
	assert.Equal(t, "Connection initialisation timeout", closed[0].Reason)
	var kinds []string
	for _, e := range closed[1:] {
		if e.Event != "should_retry" && e.Event != "retry" {
			kinds = append(kinds, fmt.Sprintf("%s:%v", e.Event, e.Retrying))
		}
	}
	assert.Equal(t, []string{"connecting:true", "connected:true", "next:false", "complete:false", "done:false"}, kinds, c.dump())
	for _, e := range events {
		if e.Event == "next" {
			assert.JSONEq(t, `{"__typename":"Query"}`, string(e.Data))
		}
	}
}

func jsBoolPtr(v bool) *bool { return &v }

// jsEvent is one line printed by client.mjs.
type jsEvent struct {
	Event    string          `json:"event"`
	Retrying bool            `json:"retrying"`
	Code     int             `json:"code"`
	Reason   string          `json:"reason"`
	Attempt  int             `json:"attempt"`
	Kind     string          `json:"kind"`
	Default  *bool           `json:"default"`
	Result   *bool           `json:"result"`
	Sub      string          `json:"sub"`
	Message  string          `json:"message"`
	Data     json.RawMessage `json:"data"`
	Errors   json.RawMessage `json:"errors"`
	raw      string
}

// comparable drops the line itself, for comparisons with a literal.
func (e jsEvent) comparable() jsEvent { e.raw = ""; e.Message = ""; return e }

// statusID is the id of a statusPosted event.
func (e jsEvent) statusID() string {
	var d struct {
		StatusPosted struct {
			ID string `json:"id"`
		} `json:"statusPosted"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.StatusPosted.ID
}

// jsAfterFirst returns events from the first one matching match on, or nil.
func jsAfterFirst(events []jsEvent, match func(jsEvent) bool) []jsEvent {
	for i, e := range events {
		if match(e) {
			return events[i:]
		}
	}
	return nil
}

// jsClientRun is one running client.mjs.
type jsClientRun struct {
	cmd    *exec.Cmd
	lines  chan jsEvent // closed at the end of its output
	stderr *testenv.Buffer

	mu     sync.Mutex
	events []jsEvent // every event read so far

	waitOnce sync.Once
	waitErr  error
}

func startJSClient(t *testing.T, node, script string, args ...string) *jsClientRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), jsClientRunTimeout)
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	c := &jsClientRun{cmd: cmd, lines: make(chan jsEvent, 1024), stderr: &testenv.Buffer{}}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var e jsEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				e = jsEvent{Event: "unparsable", Message: err.Error()}
			}
			e.raw = line
			c.lines <- e
		}
	}()
	t.Cleanup(func() {
		cancel()
		c.exit()
		if t.Failed() || testing.Verbose() {
			t.Logf("graphql-ws client events:\n%s\nstderr:\n%s", c.dump(), c.stderr.String())
		}
	})
	return c
}

// exit waits for the process to end (it ends by itself, or is killed when
// its time is up).
func (c *jsClientRun) exit() error {
	c.waitOnce.Do(func() { c.waitErr = c.cmd.Wait() })
	return c.waitErr
}

// next returns the next event, with ok false at the end of the output or
// after timeout.
func (c *jsClientRun) next(timeout time.Duration) (jsEvent, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case e, ok := <-c.lines:
		if ok {
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		}
		return e, ok
	case <-timer.C:
		return jsEvent{}, false
	}
}

// waitFor reads events until one matches and returns it.
func (c *jsClientRun) waitFor(t *testing.T, what string, match func(jsEvent) bool) jsEvent {
	t.Helper()
	deadline := time.Now().Add(jsClientStepTimeout)
	for {
		e, ok := c.next(time.Until(deadline))
		if !ok {
			t.Fatalf("graphql-ws client: no %s within %v or before its end:\n%s\nstderr:\n%s",
				what, jsClientStepTimeout, c.dump(), c.stderr.String())
		}
		if match(e) {
			return e
		}
	}
}

// requireNext waits for the next result of subscription sub and checks that
// it is st.
func (c *jsClientRun) requireNext(t *testing.T, sub string, st status) {
	t.Helper()
	e := c.waitFor(t, "next for "+st.Text, func(e jsEvent) bool { return e.Event == "next" })
	require.Equal(t, sub, e.Sub)
	require.Empty(t, e.Errors, e.raw)
	require.JSONEq(t, fmt.Sprintf(`{"statusPosted":{"id":%q,"text":%q}}`, st.ID, st.Text), string(e.Data))
}

// wait reads the rest of the output, waits for the process to exit and
// returns every event; the process must have ended its scenario by itself
// (a last "done" event and exit status 0).
func (c *jsClientRun) wait(t *testing.T) []jsEvent {
	t.Helper()
	deadline := time.Now().Add(jsClientRunTimeout)
	for {
		if _, ok := c.next(time.Until(deadline)); !ok {
			break
		}
	}
	err := c.exit()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		t.Fatalf("graphql-ws client exited with %v:\n%s\nstderr:\n%s", err, c.dump(), c.stderr.String())
	}
	require.NoError(t, err)
	c.mu.Lock()
	events := append([]jsEvent(nil), c.events...)
	c.mu.Unlock()
	require.NotEmpty(t, events)
	require.Equal(t, "done", events[len(events)-1].Event, c.dump())
	return events
}

// dump returns the events read so far, one line each.
func (c *jsClientRun) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b bytes.Buffer
	for _, e := range c.events {
		b.WriteString(e.raw)
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// requireJSClient returns node and the absolute path of client.mjs, or skips
// the test (fails it under REQUIRE_SERVICES=1) when they cannot run.
func requireJSClient(t *testing.T) (node, script string) {
	t.Helper()
	node, dir := requireNodePackages(t, "jsclient", "graphql-ws")
	return node, filepath.Join(dir, "client.mjs")
}

// requireNodePackages returns node and the absolute path of the folder dir
// (relative to e2e/), whose node_modules must hold each of pkgs, or skips the test
// (fails it under REQUIRE_SERVICES=1) saying how to install them.
func requireNodePackages(t *testing.T, dir string, pkgs ...string) (node, abs string) {
	t.Helper()
	rel := path.Join("e2e", dir) // from the repository's root: e2e/jsclient, examples/typescript
	install := "run `npm ci --prefix " + rel + "`"
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.RequireService(t, "this test needs node on PATH and the packages of %s: %s", rel, install)
		return "", ""
	}
	abs, err = filepath.Abs(dir)
	require.NoError(t, err)
	for _, pkg := range pkgs {
		if _, err := os.Stat(filepath.Join(abs, "node_modules", pkg, "package.json")); err != nil {
			testenv.RequireService(t, "%s/node_modules/%s is missing: %s", rel, pkg, install)
			return "", ""
		}
	}
	return node, abs
}

// jsClientTooManyConnectionsRetried: a user who holds LIMIT_CONNS_PER_USER
// connections already is closed with 1013 at connection_init; the client's
// default rule retries that (with its backoff, here shortened by the
// script), and once one of the user's connections has closed, it gets in
// and its subscription runs.
func jsClientTooManyConnectionsRetried(t *testing.T, node, script string) {
	s := startServer(t, map[string]string{"LIMIT_CONNS_PER_USER": "1"})
	s.logsOnFailure(t)
	token := s.signIn(t, "Tess")
	held := s.chatWS(t, token)
	c := startJSClient(t, node, script, "--url", s.WS(), "--token", token, "--scenario", "going-away")
	closed := c.waitFor(t, "the close of the connection over the limit", func(e jsEvent) bool { return e.Event == "closed" })
	assert.Equal(t, 1013, closed.Code)
	assert.Equal(t, "Too many connections for this user (at most 1)", closed.Reason)
	sr := c.waitFor(t, "shouldRetry", func(e jsEvent) bool { return e.Event == "should_retry" })
	assert.Equal(t, jsEvent{Event: "should_retry", Kind: "close", Code: 1013, Default: jsBoolPtr(true), Result: jsBoolPtr(true)}, sr.comparable(),
		"the library's default rule retries 1013")

	require.NoError(t, held.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")))
	c.waitFor(t, "a connection once Tess's other one closed", func(e jsEvent) bool { return e.Event == "connected" })
	st := s.post(t, token, "in at last")
	c.requireNext(t, "status", st)
}
