package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The two clients of TestHostileGuestCannotHurtOthers, as the trusted proxy
// names them.
const (
	attackerAddr = "198.51.100.66"
	ordinaryAddr = "203.0.113.5"
)

// TestHostileGuestCannotHurtOthers: a scripted hostile guest tries each
// cheap attack in turn, with the server's default limits (room and
// direct-room floods, a sign-in flood, query floods over HTTP and the
// WebSocket, huge and malformed bodies, a long id, a validation bomb,
// cache-filling documents) while an ordinary user keeps chatting from
// another address. Afterwards the ordinary user saw no error and every one
// of her messages, each within a bounded time, and the database grew by no
// more than the limits allow. Each attack's outcome is logged with what it
// cost.
func TestHostileGuestCannotHurtOthers(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, map[string]string{"DATA_DIR": dir, "DEMO_FEED": "false", "TRUSTED_PROXIES": "127.0.0.1"})
	s.logsOnFailure(t)
	general := s.generalRoom(t)
	ordinary := signInFrom(t, s, ordinaryAddr, "Olivia")

	chat := startOrdinaryChat(t, s, ordinary, general.ID)
	baseline := chat.waitForMessages(t, 5)
	attacker := &hostileGuest{t: t, s: s}
	for _, attack := range []struct {
		name string
		run  func() string
	}{
		{"sign-in flood", attacker.signInFlood},
		{"room flood", attacker.roomFlood},
		{"direct-room flood", func() string { return attacker.directRoomFlood(ordinary.ID) }},
		{"status and message flood", func() string { return attacker.postFlood(general.ID) }},
		{"query flood over HTTP", attacker.httpQueryFlood},
		{"query flood over the WebSocket", attacker.webSocketQueryFlood},
		{"huge and malformed bodies", attacker.badBodies},
		{"a long subscription id", attacker.longID},
		{"a validation bomb", attacker.validationBomb},
		{"cache-filling documents", attacker.cacheFill},
	} {
		start := time.Now()
		outcome := attack.run()
		t.Logf("%-32s %6s  %s", attack.name, time.Since(start).Round(time.Millisecond), outcome)
	}
	during := chat.stop(t)

	t.Logf("ordinary user: %d messages before the attacks (slowest %s), %d during them (slowest %s), no error",
		baseline.count, baseline.slowest.Round(time.Millisecond), during.count-baseline.count, during.slowest.Round(time.Millisecond))
	assert.Empty(t, during.errors, "the ordinary user saw no error")
	assert.Greater(t, during.count, baseline.count, "she went on chatting during the attacks")
	assert.Less(t, during.slowest, 5*time.Second, "each of her messages reached her within a bounded time")

	// The database grew by no more than the limits allow: ten guests a
	// minute from one address, ten rooms an hour per user.
	db, err := sql.Open("sqlite", filepath.Join(dir, "switchboard.db"))
	require.NoError(t, err)
	defer db.Close()
	count := func(table string) int {
		var n int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n))
		return n
	}
	assert.LessOrEqual(t, count("users"), 1+10, "Olivia and at most LIMIT_SIGNINS guests from the attacker's address")
	assert.LessOrEqual(t, count("rooms"), 1+10+10, "general, and at most LIMIT_ROOMS rooms for each of the two identities that created any")
	assert.LessOrEqual(t, count("messages"), during.count+attacker.posted[1], "Olivia's messages and the attacker's few")
	assert.LessOrEqual(t, count("statuses"), attacker.posted[0])
}

// signInFrom signs a guest in from addr (through the trusted proxy).
func signInFrom(t *testing.T, s *testServer, addr, name string) chatUser {
	t.Helper()
	r, _ := s.doFrom(t, addr, "", `mutation($n: String!) { signIn(name: $n) { token user { id name } } }`, map[string]any{"n": name})
	require.Empty(t, r.Errors)
	var d struct {
		SignIn struct {
			Token string
			User  user
		}
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return chatUser{user: d.SignIn.User, token: d.SignIn.Token}
}

// ordinaryChat is the ordinary user chatting in a room: she posts a message
// every 300 ms over HTTP and waits for it on her subscription, noting the
// slowest round trip and every error.
type ordinaryChat struct {
	done    chan struct{}
	stopped chan struct{}
	mu      sync.Mutex
	stats   chatStats
}

// chatStats are what the ordinary user saw.
type chatStats struct {
	count   int           // messages posted and received
	slowest time.Duration // the slowest of them, from post to receipt
	errors  []string
}

// startOrdinaryChat starts u chatting in room, from her own address.
func startOrdinaryChat(t *testing.T, s *testServer, u chatUser, room string) *ordinaryChat {
	t.Helper()
	ws := dialWS(t, s, "graphql-transport-ws", http.Header{"X-Forwarded-For": {ordinaryAddr}})
	ws.init(u.token)
	ws.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id text } }`, map[string]any{"r": room})
	c := &ordinaryChat{done: make(chan struct{}), stopped: make(chan struct{})}
	go c.run(s, ws.conn, u.token, room)
	return c
}

func (c *ordinaryChat) run(s *testServer, ws *websocket.Conn, token, room string) {
	defer close(c.stopped)
	for i := 0; ; i++ {
		select {
		case <-c.done:
			return
		case <-time.After(300 * time.Millisecond):
		}
		text := fmt.Sprintf("hello %d", i)
		start := time.Now()
		err := postFrom(s, ordinaryAddr, token, room, text)
		if err == nil {
			err = awaitMessage(ws, text, 10*time.Second)
		}
		c.mu.Lock()
		if err != nil {
			c.stats.errors = append(c.stats.errors, err.Error())
		} else {
			c.stats.count++
			c.stats.slowest = max(c.stats.slowest, time.Since(start))
		}
		c.mu.Unlock()
	}
}

// waitForMessages waits until n messages went round, and returns what was
// seen by then.
func (c *ordinaryChat) waitForMessages(t *testing.T, n int) chatStats {
	t.Helper()
	require.Eventually(t, func() bool { return c.seen().count >= n }, 20*time.Second, 50*time.Millisecond)
	return c.seen()
}

func (c *ordinaryChat) seen() chatStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// stop ends the chatting and returns everything seen.
func (c *ordinaryChat) stop(t *testing.T) chatStats {
	t.Helper()
	close(c.done)
	select {
	case <-c.stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the ordinary user's chat did not stop")
	}
	return c.seen()
}

// postFrom posts a message without failing the test (it runs beside it).
func postFrom(s *testServer, from, token, room, text string) error {
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`,
		"variables": map[string]any{"r": room, "t": text},
	})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Forwarded-For", from)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(raw, []byte(`"errors"`)) {
		return fmt.Errorf("post %q: %d %s", text, resp.StatusCode, raw)
	}
	return nil
}

// awaitMessage reads the subscription until the message text arrives.
func awaitMessage(ws *websocket.Conn, text string, timeout time.Duration) error {
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	for {
		var m wsMessage
		if err := ws.ReadJSON(&m); err != nil {
			return fmt.Errorf("waiting for %q: %w", text, err)
		}
		switch {
		case m.Type == "next" && bytes.Contains(m.Payload, []byte(`"text":"`+text+`"`)):
			return nil
		case m.Type == "ping":
			_ = ws.WriteJSON(map[string]string{"type": "pong"})
		case m.Type != "next":
			return fmt.Errorf("waiting for %q: %s %s", text, m.Type, m.Payload)
		}
	}
}

// hostileGuest runs the attacks, from attackerAddr. Each attack is bounded
// in count and time, and returns what it achieved.
type hostileGuest struct {
	t      *testing.T
	s      *testServer
	guests []chatUser // the identities the sign-in flood got
	posted [2]int     // statuses and messages the post flood got stored
}

// outcomes tallies the answers to a flood by status and code.
type outcomes map[string]int

func (o outcomes) add(r gqlResponse) {
	key := fmt.Sprint(r.Status)
	if len(r.Errors) > 0 {
		key += " " + r.Errors[0].Code()
	}
	o[key]++
}

func (o outcomes) String() string {
	var parts []string
	for k, n := range o {
		parts = append(parts, fmt.Sprintf("%d× %s", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (g *hostileGuest) signInFlood() string {
	o := outcomes{}
	for i := range 40 {
		r, _ := g.s.doFrom(g.t, attackerAddr, "", `mutation($n: String!) { signIn(name: $n) { token user { id name } } }`,
			map[string]any{"n": fmt.Sprintf("sock%d", i)})
		o.add(r)
		if len(r.Errors) == 0 {
			var d struct {
				SignIn struct {
					Token string
					User  user
				}
			}
			require.NoError(g.t, json.Unmarshal(r.Data, &d))
			g.guests = append(g.guests, chatUser{user: d.SignIn.User, token: d.SignIn.Token})
		}
	}
	require.NotEmpty(g.t, g.guests, "the first sign-ins get in")
	assert.LessOrEqual(g.t, len(g.guests), 10, "LIMIT_SIGNINS")
	return o.String()
}

func (g *hostileGuest) roomFlood() string {
	o := outcomes{}
	for i := range 40 {
		r, _ := g.s.doFrom(g.t, attackerAddr, g.guests[0].token, `mutation($n: String!) { createRoom(name: $n) { id } }`,
			map[string]any{"n": fmt.Sprintf("spam %d", i)})
		o.add(r)
	}
	assert.LessOrEqual(g.t, o["200"], 10, "LIMIT_ROOMS")
	return o.String()
}

func (g *hostileGuest) directRoomFlood(victim string) string {
	targets := []string{victim}
	for _, u := range g.guests[1 : len(g.guests)-1] {
		targets = append(targets, u.ID)
	}
	open := func(opener chatUser) outcomes {
		o := outcomes{}
		for range 3 { // reopening is free, opening anew is not
			for _, id := range targets {
				r, _ := g.s.doFrom(g.t, attackerAddr, opener.token, `mutation($u: ID!) { openDirectRoom(userId: $u) { id } }`, map[string]any{"u": id})
				o.add(r)
			}
		}
		return o
	}
	spent := open(g.guests[0])               // the room flood used its budget up
	fresh := open(g.guests[len(g.guests)-1]) // a budget of its own: at most LIMIT_ROOMS new ones
	assert.Zero(g.t, spent["200"], "no new direct room once the budget is spent")
	return fmt.Sprintf("spent budget: %s; fresh budget: %s", spent, fresh)
}

func (g *hostileGuest) postFlood(room string) string {
	statuses, messages := outcomes{}, outcomes{}
	for i := range 60 {
		r, _ := g.s.doFrom(g.t, attackerAddr, g.guests[1].token, `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": fmt.Sprint("buy now ", i)})
		statuses.add(r)
		r, _ = g.s.doFrom(g.t, attackerAddr, g.guests[1].token, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`,
			map[string]any{"r": room, "t": fmt.Sprint("buy now ", i)})
		messages.add(r)
	}
	g.posted = [2]int{statuses["200"], messages["200"]}
	assert.Positive(g.t, statuses["200 RATE_LIMITED"], "LIMIT_STATUSES")
	assert.Positive(g.t, messages["200 RATE_LIMITED"], "LIMIT_MESSAGES")
	return fmt.Sprintf("statuses: %s; messages: %s", statuses, messages)
}

func (g *hostileGuest) httpQueryFlood() string {
	o := outcomes{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	for range 4 {
		wg.Go(func() {
			for n := 0; n < 5000 && time.Now().Before(deadline); n++ {
				r, ok := tryDoFrom(g.s, attackerAddr, g.guests[0].token, `{ me { id } rooms(first: 100) { edges { node { id } } } }`)
				mu.Lock()
				if ok {
					o.add(r)
				} else {
					o["transport error"]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// LIMIT_REQUESTS: 50 a second in bursts of 100, however fast the flood.
	assert.LessOrEqual(g.t, float64(o["200"]), 100+50*time.Since(start).Seconds(), "LIMIT_REQUESTS")
	return o.String()
}

// tryDoFrom is doFrom that reports failure instead of failing the test.
func tryDoFrom(s *testServer, from, token, query string) (gqlResponse, bool) {
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Forwarded-For", from)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gqlResponse{}, false
	}
	defer resp.Body.Close()
	var out gqlResponse
	if json.NewDecoder(resp.Body).Decode(&out) != nil {
		return gqlResponse{}, false
	}
	out.Status = resp.StatusCode
	return out, true
}

func (g *hostileGuest) webSocketQueryFlood() string {
	ws := dialWS(g.t, g.s, "graphql-transport-ws", http.Header{"X-Forwarded-For": {attackerAddr}})
	ws.init(g.guests[0].token)
	for i := range 300 {
		ws.subscribe(fmt.Sprint("q", i), `{ __typename }`, nil)
	}
	o := outcomes{}
	for range 300 {
		m, err := ws.tryRead(5 * time.Second)
		if err != nil {
			break
		}
		switch m.Type {
		case "next":
			o["next"]++
		case "error":
			var errs []gqlError
			_ = json.Unmarshal(m.Payload, &errs)
			if len(errs) > 0 {
				o["error "+errs[0].Code()]++
			}
		}
	}
	assert.Positive(g.t, o["error RATE_LIMITED"], "LIMIT_OPERATIONS and LIMIT_REQUESTS")
	return o.String()
}

func (g *hostileGuest) badBodies() string {
	o := outcomes{}
	for _, body := range []string{strings.Repeat("x", 2<<20), `{"query": `, `[{"query":"{ me { id } }"}]`} {
		req, err := http.NewRequest(http.MethodPost, g.s.URL+"/graphql", strings.NewReader(body))
		require.NoError(g.t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", attackerAddr)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(g.t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o[fmt.Sprint(resp.StatusCode)]++
		assert.Less(g.t, resp.StatusCode, 500, "a client mistake is a client error")
	}
	assert.Equal(g.t, 1, o["413"], "the 2 MiB body")
	return o.String()
}

func (g *hostileGuest) longID() string {
	ws := dialWS(g.t, g.s, "graphql-transport-ws", http.Header{"X-Forwarded-For": {attackerAddr}})
	ws.init(g.guests[0].token)
	ws.subscribe(strings.Repeat("i", 1000), `{ __typename }`, nil)
	code, reason := ws.closeCode(5 * time.Second)
	assert.Equal(g.t, 4400, code)
	return fmt.Sprintf("closed %d %q", code, reason)
}

func (g *hostileGuest) validationBomb() string {
	r, ok := tryDoFrom(g.s, attackerAddr, "", "{ "+strings.Repeat("__typename ", 4500)+"}")
	require.True(g.t, ok)
	require.NotEmpty(g.t, r.Errors)
	return fmt.Sprintf("%d %s: %s", r.Status, r.Errors[0].Code(), r.Errors[0].Message)
}

func (g *hostileGuest) cacheFill() string {
	o := outcomes{}
	pad := strings.Repeat("x", 6000)
	for i := range 300 {
		r, ok := tryDoFrom(g.s, attackerAddr, g.guests[0].token, fmt.Sprintf("{ me { id } } # %d %s", i, pad))
		if ok {
			o.add(r)
		}
	}
	parsed := g.s.metric(g.t, `switchboard_query_cache_bytes{cache="parsed"}`)
	assert.LessOrEqual(g.t, parsed, float64(16<<20), "the parsed-query cache stays within its bytes")
	return fmt.Sprintf("%s; parsed-query cache %.1f KiB", o, parsed/1024)
}
