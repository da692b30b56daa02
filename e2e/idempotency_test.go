package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// The keyed writes, each taking its key as the argument $k (null when the
// key goes in the Idempotency-Key header), and answering with one field
// that names what it stored.
const (
	keyedPostStatus       = `mutation($t: String!, $k: String) { postStatus(text: $t, idempotencyKey: $k) { id } }`
	keyedPostMessage      = `mutation($r: ID!, $t: String!, $k: String) { postMessage(roomId: $r, text: $t, idempotencyKey: $k) { id } }`
	keyedSendNotification = `mutation($in: NotificationInput!, $k: String) { sendNotification(input: $in, idempotencyKey: $k) { id } }`
	keyedRecordKPIs       = `mutation($in: [KPIInput!]!, $k: String) { recordKPIs(inputs: $in, idempotencyKey: $k) { key } }`
)

// intendedWrite is one write a client means to make once, whatever it
// takes: its operation, document and variables, the token it is sent
// with, its key and how the key travels.
type intendedWrite struct {
	op, query string
	vars      map[string]any
	token     string
	key       string
	header    bool // the key in the Idempotency-Key header, not the argument
}

// writesOf returns n intended writes of each keyed operation, named after
// label: statuses and messages in room by guest, notifications to guest
// and KPIs (module "retry", key label-i) by admin. Over HTTP every other
// write sends its key in the header.
func writesOf(label string, n int, overHTTP bool, guest chatUser, admin, room string) []intendedWrite {
	var out []intendedWrite
	for i := range n {
		name := fmt.Sprintf("%s-%d", label, i)
		out = append(out,
			intendedWrite{op: models.OpPostStatus, query: keyedPostStatus, token: guest.token,
				vars: map[string]any{"t": "status " + name}},
			intendedWrite{op: models.OpPostMessage, query: keyedPostMessage, token: guest.token,
				vars: map[string]any{"r": room, "t": "message " + name}},
			intendedWrite{op: models.OpSendNotification, query: keyedSendNotification, token: admin,
				vars: map[string]any{"in": map[string]any{"userId": guest.ID, "title": "notification " + name}}},
			intendedWrite{op: models.OpRecordKPIs, query: keyedRecordKPIs, token: admin,
				vars: map[string]any{"in": []any{kv("retry", strings.ToLower(name), i)}}},
		)
	}
	for i := range out {
		out[i].key = fmt.Sprintf("%s-%d-%s", label, i, out[i].op)
		out[i].header = overHTTP && i%2 == 0
	}
	return out
}

// retryingClient is the client issue 14 describes: it sends each write with
// a key of its own and, when no answer comes within timeout (or the answer
// is UNAVAILABLE), sends it again with the same key, to the next server in
// turn, until one answers. With cancel, an attempt that timed out is
// cancelled (its connection closed, as an HTTP client's timeout does);
// without, it is left running and its answer, if any comes, is lost (the
// worst case: the first attempt is still in flight at one replica while
// its retry reaches another).
type retryingClient struct {
	t       *testing.T
	servers []string // base URLs (http://host:port)
	timeout time.Duration
	cancel  bool
	http    *http.Client
}

func newRetryingClient(t *testing.T, timeout time.Duration, cancel bool, servers ...string) *retryingClient {
	transport := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &retryingClient{t: t, servers: servers, timeout: timeout, cancel: cancel, http: &http.Client{Transport: transport}}
}

// errNoAnswer is an attempt that got no answer in time, or UNAVAILABLE.
var errNoAnswer = errors.New("no answer")

// attemptResult is what one attempt got: an answer or an error.
type attemptResult struct {
	answer string
	err    error
}

// attempt sends w once to server, over HTTP or WebSocket, and delivers
// what it gets on the returned channel: within c.timeout when c.cancel,
// else whenever the server answers (within a minute).
func (c *retryingClient) attempt(server string, w intendedWrite, overHTTP bool) <-chan attemptResult {
	limit := time.Minute
	if c.cancel {
		limit = c.timeout
	}
	out := make(chan attemptResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		var r attemptResult
		if overHTTP {
			r.answer, r.err = c.sendHTTP(ctx, server, w)
		} else {
			r.answer, r.err = c.sendWS(ctx, server, w)
		}
		out <- r
	}()
	return out
}

// sendUntilAnswered sends w until it is answered (within 90 s), and
// reports on missedTwice once it has missed two answers. It returns the
// answer, how many attempts it took, and the answers that came late to
// attempts it had given up on.
func (c *retryingClient) sendUntilAnswered(w intendedWrite, overHTTP bool, missedTwice func()) (answer string, attempts int, late []string) {
	var abandoned []<-chan attemptResult
	defer func() {
		for _, a := range abandoned {
			if r := <-a; r.err == nil {
				late = append(late, r.answer)
			}
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for attempts = 1; time.Now().Before(deadline); attempts++ {
		pending := c.attempt(c.servers[(attempts-1)%len(c.servers)], w, overHTTP)
		var r attemptResult
		select {
		case r = <-pending:
		case <-time.After(c.timeout):
			abandoned = append(abandoned, pending)
			r.err = errNoAnswer
		}
		switch {
		case r.err == nil:
			return r.answer, attempts, nil
		case !errors.Is(r.err, errNoAnswer):
			c.t.Errorf("%s %s: %v", w.op, w.key, r.err)
			return "", attempts, nil
		case attempts == 2:
			missedTwice()
		}
	}
	c.t.Errorf("%s %s: no answer within 90 s", w.op, w.key)
	return "", attempts, nil
}

// sendAll sends every write at once, each until it is answered; after
// every write has missed at least two answers, heal ends the fault. It
// checks that each write took three attempts or more and that any late
// answer to an attempt given up on names the same thing, and returns each
// write's answer (the named field's id or key) and attempts.
func (c *retryingClient) sendAll(writes []intendedWrite, overHTTP bool, heal func()) (answers []string, attempts []int) {
	t := c.t
	answers, attempts = make([]string, len(writes)), make([]int, len(writes))
	late := make([][]string, len(writes))
	var missedTwice, wg sync.WaitGroup
	missedTwice.Add(len(writes))
	for i, w := range writes {
		wg.Go(func() {
			var once sync.Once
			defer once.Do(missedTwice.Done) // answered sooner: the check below fails
			answers[i], attempts[i], late[i] = c.sendUntilAnswered(w, overHTTP, func() { once.Do(missedTwice.Done) })
		})
	}
	waitGroup(t, &missedTwice, 60*time.Second, "every write to miss two answers")
	heal()
	waitGroup(t, &wg, 120*time.Second, "every write to be answered")
	for i, w := range writes {
		assert.GreaterOrEqual(t, attempts[i], 3, "%s %s: answered only after the fault, retried with its key", w.op, w.key)
		for _, a := range late[i] {
			assert.Equal(t, answers[i], a, "%s %s: a late answer to an earlier attempt names the same write", w.op, w.key)
		}
	}
	return answers, attempts
}

// waitGroup waits for wg, failing the test after limit.
func waitGroup(t *testing.T, wg *sync.WaitGroup, limit time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("waited %v for %s", limit, what)
	}
}

// answerOf reads the one field of a keyed write's answer: its id, or a
// KPI's key.
func answerOf(w intendedWrite, data json.RawMessage) (string, error) {
	var d map[string]json.RawMessage
	if err := json.Unmarshal(data, &d); err != nil {
		return "", fmt.Errorf("answer %s: %w", data, err)
	}
	var v struct{ ID, Key string }
	var list []struct{ Key string }
	if w.op == models.OpRecordKPIs {
		if err := json.Unmarshal(d[w.op], &list); err != nil || len(list) != 1 {
			return "", fmt.Errorf("answer %s: %v", data, err)
		}
		return list[0].Key, nil
	}
	if err := json.Unmarshal(d[w.op], &v); err != nil {
		return "", fmt.Errorf("answer %s: %w", data, err)
	}
	return v.ID, nil
}

// result turns errors into an answer, errNoAnswer for UNAVAILABLE.
func result(w intendedWrite, data json.RawMessage, errs []gqlError) (string, error) {
	if len(errs) > 0 {
		if errs[0].Code() == string(models.Unavailable) {
			return "", errNoAnswer
		}
		return "", fmt.Errorf("errors: %+v", errs)
	}
	return answerOf(w, data)
}

// sendHTTP makes one attempt of w over HTTP POST, until ctx ends.
func (c *retryingClient) sendHTTP(ctx context.Context, server string, w intendedWrite) (string, error) {
	vars := map[string]any{"k": w.key}
	for k, v := range w.vars {
		vars[k] = v
	}
	if w.header {
		vars["k"] = nil
	}
	body, err := json.Marshal(map[string]any{"query": w.query, "variables": vars})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.token)
	if w.header {
		req.Header.Set("Idempotency-Key", w.key)
	}
	resp, err := c.http.Do(req)
	if ctx.Err() != nil {
		return "", errNoAnswer
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r gqlResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		if ctx.Err() != nil {
			return "", errNoAnswer
		}
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return result(w, r.Data, r.Errors)
}

// sendWS makes one attempt of w over a new graphql-transport-ws
// connection, until ctx ends: then the connection is dropped, as a client
// drops a socket that went quiet. Failing to connect is a missed answer
// too.
func (c *retryingClient) sendWS(ctx context.Context, server string, w intendedWrite) (string, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
	conn, resp, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(server, "http")+"/graphql", nil)
	if err != nil {
		return "", fmt.Errorf("%w: dial: %v", errNoAnswer, err)
	}
	_ = resp.Body.Close()
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetReadDeadline(deadline)
	vars := map[string]any{"k": w.key}
	for k, v := range w.vars {
		vars[k] = v
	}
	msgs := []map[string]any{
		{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + w.token}},
		{"type": "subscribe", "id": "1", "payload": map[string]any{"query": w.query, "variables": vars}},
	}
	if err := conn.WriteJSON(msgs[0]); err != nil {
		return "", fmt.Errorf("%w: init: %v", errNoAnswer, err)
	}
	var ack wsMessage
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		return "", fmt.Errorf("%w: no ack (%s): %v", errNoAnswer, ack.Type, err)
	}
	if err := conn.WriteJSON(msgs[1]); err != nil {
		return "", fmt.Errorf("%w: subscribe: %v", errNoAnswer, err)
	}
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			return "", errNoAnswer
		}
		switch m.Type {
		case "next":
			var p struct {
				Data   json.RawMessage `json:"data"`
				Errors []gqlError      `json:"errors"`
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				return "", err
			}
			return result(w, p.Data, p.Errors)
		case "error":
			var errs []gqlError
			_ = json.Unmarshal(m.Payload, &errs)
			return result(w, nil, errs)
		}
	}
}

// checkStoredOnce checks that each write was stored exactly once, as its
// answer names it: a status and a message per answered id with its text, a
// notification per title, one sample per KPI.
func checkStoredOnce(t *testing.T, s *testServer, writes []intendedWrite, answers []string, guest chatUser, admin, room string) {
	t.Helper()
	var feed struct {
		Statuses struct{ Edges []struct{ Node status } }
	}
	s.mustDo(t, "", `{ statuses(first: 100) { edges { node { id text } } } }`, nil, &feed)
	statuses := map[string][]string{} // text → ids
	for _, e := range feed.Statuses.Edges {
		statuses[e.Node.Text] = append(statuses[e.Node.Text], e.Node.ID)
	}
	messages := map[string][]string{}
	for _, m := range s.history(t, guest.token, room) {
		messages[m.Text] = append(messages[m.Text], m.ID)
	}
	var inbox struct {
		Notifications struct{ Edges []struct{ Node notification } }
	}
	s.mustDo(t, guest.token, `{ notifications(first: 100) { edges { node { id title } } } }`, nil, &inbox)
	notifications := map[string][]string{}
	for _, e := range inbox.Notifications.Edges {
		notifications[e.Node.Title] = append(notifications[e.Node.Title], e.Node.ID)
	}
	for i, w := range writes {
		switch w.op {
		case models.OpPostStatus:
			assert.Equal(t, []string{answers[i]}, statuses[w.vars["t"].(string)], "status %q", w.vars["t"])
		case models.OpPostMessage:
			assert.Equal(t, []string{answers[i]}, messages[w.vars["t"].(string)], "message %q", w.vars["t"])
		case models.OpSendNotification:
			title := w.vars["in"].(map[string]any)["title"].(string)
			assert.Equal(t, []string{answers[i]}, notifications[title], "notification %q", title)
		case models.OpRecordKPIs:
			var h struct{ KpiHistory []struct{ Value float64 } }
			s.mustDo(t, admin, `query($k: String!) { kpiHistory(module: "retry", key: $k) { value } }`, map[string]any{"k": answers[i]}, &h)
			assert.Len(t, h.KpiHistory, 1, "KPI retry/%s", answers[i])
		}
	}
	count := map[string]int{}
	for _, w := range writes {
		count[w.op]++
	}
	assert.Len(t, feed.Statuses.Edges, count[models.OpPostStatus], "no other status")
	assert.Len(t, inbox.Notifications.Edges, count[models.OpSendNotification], "no other notification")
}

// TestRetriedWritesThroughLostAnswers: with a proxy in front of the server
// adding 250 ms each way, a client that waits 400 ms for an answer never
// gets one, although the server did the write; it retries every write
// with its key, over HTTP (the key in the header or the argument) and over
// WebSocket (the argument, on a new connection), until the latency goes.
// Each write was stored exactly once, and the answer the client finally
// got names it.
func TestRetriedWritesThroughLostAnswers(t *testing.T) {
	for _, transport := range []string{"HTTP", "WebSocket"} {
		t.Run(transport, func(t *testing.T) {
			srv := startServer(t, map[string]string{"DEMO_FEED": "false",
				"LIMIT_REQUESTS": "0", "LIMIT_STATUSES": "0", "LIMIT_MESSAGES": "0", "LIMIT_CONNS_PER_USER": "0"})
			srv.logsOnFailure(t)
			admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)
			guest := srv.chatUser(t, "retrier")
			room := srv.generalRoom(t).ID
			proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL, "http://"))
			client := newRetryingClient(t, 400*time.Millisecond, true, "http://"+proxy.Addr())

			overHTTP := transport == "HTTP"
			writes := writesOf(transport, 2, overHTTP, guest, admin, room)
			proxy.SetLatency(250 * time.Millisecond)
			answers, attempts := client.sendAll(writes, overHTTP, proxy.Forward)
			t.Logf("%s: attempts per write %v", transport, attempts)
			checkStoredOnce(t, srv, writes, answers, guest, admin, room)
		})
	}
}

// TestRetriedWritesThroughADatabaseStall: two replicas share a MySQL
// database behind a proxy that stops forwarding for a while, as a frozen
// database would. A client that waits 500 ms for an answer retries every
// write with its key, to each replica in turn, over HTTP and over
// WebSocket, leaving the attempts it gave up on running: the first
// attempt of each write is still in flight on one replica, stuck on the
// database, while its retries reach the other. When the database answers
// again, each write was stored exactly once, every attempt that got an
// answer got the same one, and it names the write.
func TestRetriedWritesThroughADatabaseStall(t *testing.T) {
	dbURL, err := url.Parse(storetest.MySQLURL(t))
	require.NoError(t, err)
	proxy := faultproxy.Start(t, dbURL.Host)
	dbURL.Host = proxy.Addr()
	env := map[string]string{"DATABASE_URL": dbURL.String(),
		"LIMIT_REQUESTS": "0", "LIMIT_STATUSES": "0", "LIMIT_MESSAGES": "0", "LIMIT_CONNS_PER_USER": "0"}
	first, second := startServer(t, env), startServer(t, env)
	first.logsOnFailure(t)
	second.logsOnFailure(t)
	admin := first.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	guest := first.chatUser(t, "retrier")
	room := first.generalRoom(t).ID
	client := newRetryingClient(t, 500*time.Millisecond, false, first.URL, second.URL)

	var all []intendedWrite
	var answered []string
	for _, transport := range []string{"HTTP", "WebSocket"} {
		overHTTP := transport == "HTTP"
		writes := writesOf(transport, 2, overHTTP, guest, admin, room)
		proxy.Stall()
		answers, attempts := client.sendAll(writes, overHTTP, proxy.Forward)
		t.Logf("%s: attempts per write %v", transport, attempts)
		all, answered = append(all, writes...), append(answered, answers...)
		checkStoredOnce(t, second, all, answered, guest, admin, room)
	}
}

// TestIdempotencyKeyRules: the rules of the key as a client meets them.
// The argument and the Idempotency-Key header are one key (the header may
// be quoted, as the IETF draft writes it); given both, they must agree; a
// key is 1..128 visible ASCII characters; the header names the key of a
// request's one mutation; the same key with another text is refused; a
// key is its user's and its operation's. Over WebSocket the header of the
// upgrade request is not a key. Every refusal is BAD_USER_INPUT and
// stores nothing.
func TestIdempotencyKeyRules(t *testing.T) {
	srv := startServer(t, map[string]string{"LIMIT_STATUSES": "0", "LIMIT_REQUESTS": "0"})
	srv.logsOnFailure(t)
	ada, bob := srv.chatUser(t, "ada"), srv.chatUser(t, "bob")
	post := func(token, text string, arg any, header string) gqlResponse {
		t.Helper()
		r, _ := srv.doWith(t, token, keyedPostStatus, map[string]any{"t": text, "k": arg}, keyHeader(header))
		return r
	}
	idOf := func(r gqlResponse) string {
		t.Helper()
		require.Empty(t, r.Errors)
		var d struct{ PostStatus struct{ ID string } }
		require.NoError(t, json.Unmarshal(r.Data, &d))
		return d.PostStatus.ID
	}

	first := idOf(post(ada.token, "one", nil, "k-1"))
	assert.Equal(t, first, idOf(post(ada.token, "one", "k-1", "")), "the header's key is the argument's")
	assert.Equal(t, first, idOf(post(ada.token, "one", "k-1", `"k-1"`)), "a quoted header, equal to the argument")
	assert.NotEqual(t, first, idOf(post(bob.token, "one", "k-1", "")), "bob's k-1 is his own")
	var message struct{ PostMessage struct{ ID string } }
	srv.mustDo(t, ada.token, keyedPostMessage, map[string]any{"r": srv.generalRoom(t).ID, "t": "one", "k": "k-1"}, &message)
	assert.NotEmpty(t, message.PostMessage.ID, "postMessage's k-1 is not postStatus's")

	refusals := []struct {
		name, text string
		arg        any
		header     string
		errPart    string
	}{
		{"another text", "two", "k-1", "", `idempotencyKey "k-1" was used for another postStatus with other arguments`},
		{"argument and header differ", "two", "k-2", "k-3", "the idempotencyKey argument and the Idempotency-Key header differ"},
		{"an empty argument", "two", "", "", "idempotencyKey must be 1..128 characters long (got 0)"},
		{"a space", "two", nil, "k 2", "only visible ASCII"},
		{"too long", "two", strings.Repeat("k", 129), "", "idempotencyKey must be 1..128 characters long (got 129)"},
		{"a non-ASCII argument", "two", "clé", "", "only visible ASCII"},
	}
	for _, tt := range refusals {
		r := post(ada.token, tt.text, tt.arg, tt.header)
		if assert.Len(t, r.Errors, 1, tt.name) {
			assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code(), tt.name)
			assert.Contains(t, r.Errors[0].Message, tt.errPart, tt.name)
		}
	}
	r, _ := srv.doWith(t, ada.token, `mutation { a: postStatus(text: "two") { id } b: postStatus(text: "three") { id } }`, nil, keyHeader("k-4"))
	require.Len(t, r.Errors, 2, "one refusal per mutation")
	assert.Contains(t, r.Errors[0].Message, "the Idempotency-Key header is the key of a request's one mutation, and this request has 2")

	ws := dialWS(t, srv, "graphql-transport-ws", http.Header{"Idempotency-Key": {"k-5"}})
	ws.init(ada.token)
	for i, text := range []string{"four", "four"} {
		id := strconv.Itoa(i + 1)
		ws.subscribe(id, `mutation($t: String!) { postStatus(text: $t) { id } }`, map[string]any{"t": text})
		m := ws.read(5 * time.Second)
		require.Equal(t, "next", m.Type, "payload %s", m.Payload)
		require.Equal(t, "complete", ws.read(5*time.Second).Type)
	}
	assert.Equal(t, []string{"four", "four", "one", "one"}, srv.statusTexts(t),
		"ada's one, bob's one and two fours over WebSocket: nothing else stored")
}

// keyHeader is an Idempotency-Key header of key, none for "".
func keyHeader(key string) http.Header {
	if key == "" {
		return nil
	}
	return http.Header{"Idempotency-Key": {key}}
}

// TestRetriedWritesThroughBothFaults: the two faults that hang instead of
// failing, at once. Two replicas share a MySQL database behind a proxy and
// a private Redis; the database stops answering and Redis is frozen with
// SIGSTOP, for 6 s; then the database answers again while Redis stays
// frozen until every write is answered. A client that waits 500 ms for an
// answer retries every write with its key, to each replica in turn, over
// HTTP and over WebSocket, leaving the attempts it gave up on running.
// When both answer again, each
// write was stored exactly once, and subscribers of the status feed and of
// the room on both replicas, resuming from the start, received every
// status and message once, in order.
func TestRetriedWritesThroughBothFaults(t *testing.T) {
	const bothFaultsFor = 6 * time.Second
	dbURL, err := url.Parse(storetest.MySQLURL(t))
	require.NoError(t, err)
	db := faultproxy.Start(t, dbURL.Host)
	dbURL.Host = db.Addr()
	redis := redistest.Start(t)
	env := map[string]string{"DATABASE_URL": dbURL.String(), "REDIS_URL": redis.URL(),
		"LIMIT_REQUESTS": "0", "LIMIT_STATUSES": "0", "LIMIT_MESSAGES": "0", "LIMIT_CONNS_PER_USER": "0"}
	replicas := []*testServer{startServer(t, env), startServer(t, env)}
	for _, s := range replicas {
		s.logsOnFailure(t)
	}
	first := replicas[0]
	admin := first.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	guest := first.chatUser(t, "retrier")
	room := first.generalRoom(t).ID
	var subs []*collector
	for _, s := range replicas {
		for _, feed := range []durableFeed{statusFeed, messageFeed(room)} {
			subs = append(subs, collect(t, s, guest.token, feed, true))
		}
	}
	client := newRetryingClient(t, 500*time.Millisecond, false, first.URL, replicas[1].URL)

	var all []intendedWrite
	var answered []string
	for _, transport := range []string{"HTTP", "WebSocket"} {
		overHTTP := transport == "HTTP"
		writes := writesOf("both-"+transport, 2, overHTTP, guest, admin, room)
		skipped := -brokerSkipped(t, replicas, "publish")
		redis.Freeze()
		db.Stall()
		faultAt := time.Now()
		answers, attempts := client.sendAll(writes, overHTTP, func() {
			waitFor(bothFaultsFor - time.Since(faultAt))
			db.Forward()
		})
		skipped += brokerSkipped(t, replicas, "publish")
		redis.Thaw()
		assert.Positive(t, skipped, "with the database back and Redis still frozen, the writes went through without Redis")
		t.Logf("%s: both faults for %s, then Redis alone until every write was answered; attempts per write %v; %.0f publishes skipped",
			transport, bothFaultsFor, attempts, skipped)
		all, answered = append(all, writes...), append(answered, answers...)
		checkStoredOnce(t, replicas[1], all, answered, guest, admin, room)
	}
	posted := map[string][]string{}
	for i, w := range all {
		posted[w.op] = append(posted[w.op], answered[i])
	}
	for _, c := range subs {
		op := map[string]string{statusFeed.field: models.OpPostStatus}[c.feed.field]
		if op == "" {
			op = models.OpPostMessage
		}
		c.check(t, posted[op])
	}
}
