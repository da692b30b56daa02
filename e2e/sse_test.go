package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/models"
)

// sseTimeout bounds every wait for an event.
const sseTimeout = 10 * time.Second

// sseEvent is one event of an event stream, or a comment.
type sseEvent struct {
	Event, ID, Data string
	Comment         string // a comment line's text (the event is a comment)
}

// response decodes a next event's data.
func (e sseEvent) response(tb testing.TB) gqlResponse {
	tb.Helper()
	var r gqlResponse
	require.NoError(tb, json.Unmarshal([]byte(e.Data), &r), "event data %q", e.Data)
	return r
}

// sseStream is an open event stream: its events arrive on events, which is
// closed when the stream ends.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openSSE sends a GraphQL request asking for an event stream: a GET with
// the query in the URL when body is nil (as an EventSource does), else a
// POST of body. header adds headers (Authorization, Last-Event-ID).
func openSSE(tb testing.TB, base string, query string, vars map[string]any, post bool, header http.Header) *sseStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var req *http.Request
	var err error
	if post {
		body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", strings.NewReader(string(body)))
		require.NoError(tb, err)
		req.Header.Set("Content-Type", "application/json")
	} else {
		q := url.Values{"query": {query}}
		if vars != nil {
			v, _ := json.Marshal(vars)
			q.Set("variables", string(v))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/graphql?"+q.Encode(), nil)
		require.NoError(tb, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	s := &sseStream{resp: resp, events: make(chan sseEvent, 256), cancel: cancel}
	tb.Cleanup(s.close)
	go s.read()
	return s
}

func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// read parses the stream as the EventSource specification says (the
// subset the server writes: event, id, data, comments, retry).
func (s *sseStream) read() {
	defer close(s.events)
	sc := bufio.NewScanner(s.resp.Body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if ev.Event != "" || ev.Data != "" {
				s.events <- ev
			}
			ev = sseEvent{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			s.events <- sseEvent{Comment: value}
		case "event":
			ev.Event = value
		case "id":
			ev.ID = value
		case "data":
			ev.Data = value
		}
	}
}

// next returns the next event that is not a comment, failing the test if
// none comes within sseTimeout; ok is false if the stream ended.
func (s *sseStream) next(tb testing.TB) (ev sseEvent, ok bool) {
	tb.Helper()
	deadline := time.After(sseTimeout)
	for {
		select {
		case ev, ok = <-s.events:
			if ok && ev.Comment != "" {
				continue
			}
			return ev, ok
		case <-deadline:
			tb.Fatalf("no event within %v", sseTimeout)
			return
		}
	}
}

// nextStatus returns the next event, which must be a next event with a
// status (of statusPosted), and its id.
func (s *sseStream) nextStatus(tb testing.TB) (status, string) {
	tb.Helper()
	ev, ok := s.next(tb)
	require.True(tb, ok, "the stream ended")
	require.Equal(tb, "next", ev.Event, "event %+v", ev)
	var d struct{ StatusPosted status }
	r := ev.response(tb)
	require.Empty(tb, r.Errors, "errors in %s", ev.Data)
	require.NoError(tb, json.Unmarshal(r.Data, &d))
	return d.StatusPosted, ev.ID
}

// finished reads the rest of a stream that must end with an error event
// of code, then complete, and returns the error's message.
func (s *sseStream) finished(tb testing.TB, code string) string {
	tb.Helper()
	ev, ok := s.next(tb)
	require.True(tb, ok, "the stream ended without an error")
	require.Equal(tb, "next", ev.Event, "event %+v", ev)
	r := ev.response(tb)
	require.NotEmpty(tb, r.Errors, "no error in %s", ev.Data)
	assert.Equal(tb, code, r.Errors[0].Code(), "error %+v", r.Errors[0])
	assert.NotContains(tb, ev.Data, `"data"`, "a request refused before it ran has no data entry")
	ev, ok = s.next(tb)
	require.True(tb, ok, "the stream ended without complete")
	assert.Equal(tb, "complete", ev.Event)
	_, ok = s.next(tb)
	assert.False(tb, ok, "the stream goes on after complete")
	return r.Errors[0].Message
}

// TestSSESubscriptionResumes: a subscription over Server-Sent Events gets
// every status as a next event whose id is its position; a client that
// comes back with that id in Last-Event-ID (as an EventSource does, with the
// request of its first connection) resumes after it, also across a server
// restart, with nothing missed or repeated.
func TestSSESubscriptionResumes(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "ADDR": freeLoopbackAddr(t)}
	srv := startServer(t, env)
	srv.logsOnFailure(t)
	token := srv.signIn(t, "Ada")
	first := srv.post(t, token, "before")

	const query = `subscription($a: ID) { statusPosted(after: $a) { id text author { name } } }`
	s := openSSE(t, srv.URL, query, map[string]any{"a": "0"}, false, nil)
	assert.Equal(t, "text/event-stream; charset=utf-8", s.resp.Header.Get("Content-Type"))
	assert.Equal(t, http.StatusOK, s.resp.StatusCode)
	got, id := s.nextStatus(t)
	assert.Equal(t, first.ID, got.ID, "replayed from after 0")
	assert.Equal(t, first.ID, id, "the event's id is the status's position")
	live := srv.post(t, token, "live")
	got, id = s.nextStatus(t)
	assert.Equal(t, live.ID, got.ID)
	assert.Equal(t, "Ada", got.Author.Name)
	s.close()

	// Away for a while: two statuses go by, then the server restarts.
	missed := []status{srv.post(t, token, "missed 1"), srv.post(t, token, "missed 2")}
	srv.stop()
	srv = startServer(t, env)
	srv.logsOnFailure(t)
	missed = append(missed, srv.post(t, token, "missed 3"))

	// The same request, with the last id received: the statuses missed,
	// once each, then live ones.
	s = openSSE(t, srv.URL, query, map[string]any{"a": "0"}, false, http.Header{"Last-Event-ID": {id}})
	for _, want := range missed {
		got, gotID := s.nextStatus(t)
		assert.Equal(t, want.ID, got.ID)
		assert.Equal(t, want.ID, gotID)
	}
	live = srv.post(t, token, "live again")
	got, _ = s.nextStatus(t)
	assert.Equal(t, live.ID, got.ID, "nothing repeated, nothing between")

	// A stream the server ends by shutting down ends without complete, so
	// that the client reconnects.
	srv.stop()
	for {
		ev, ok := s.next(t)
		if !ok {
			break
		}
		assert.NotEqual(t, "complete", ev.Event, "a shutdown completes no subscription")
	}
}

// TestSSEOperations: queries and mutations over Server-Sent Events get one
// next event and complete; every refusal is a next event with the error
// and its code, then complete, in a 200 response, as the graphql-sse
// protocol asks; authentication is the Authorization header's.
func TestSSEOperations(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	token := srv.signIn(t, "Bo")
	auth := http.Header{"Authorization": {"Bearer " + token}}

	// A mutation (POST) with the token, then a query (GET).
	s := openSSE(t, srv.URL, `mutation { postStatus(text: "over SSE") { id author { name } } }`, nil, true, auth)
	ev, _ := s.next(t)
	assert.Equal(t, "next", ev.Event)
	assert.Contains(t, ev.Data, `"name":"Bo"`)
	ev, _ = s.next(t)
	assert.Equal(t, "complete", ev.Event)
	s = openSSE(t, srv.URL, `{ statuses(first: 1) { edges { node { text } } } }`, nil, false, nil)
	ev, _ = s.next(t)
	assert.Contains(t, ev.Data, `"text":"over SSE"`)
	ev, _ = s.next(t)
	assert.Equal(t, "complete", ev.Event)

	refusals := []struct {
		name, query string
		post        bool
		header      http.Header
		code        string
	}{
		{"a document that does not validate", `{ nope }`, false, nil, "GRAPHQL_VALIDATION_FAILED"},
		{"a mutation over GET", `mutation { postStatus(text: "x") { id } }`, false, auth, "BAD_REQUEST"},
		{"a mutation without a token", `mutation { postStatus(text: "x") { id } }`, true, nil, "UNAUTHENTICATED"},
		{"a subscription that needs a token", `subscription { notificationAdded { id } }`, false, nil, "UNAUTHENTICATED"},
		{"a cursor beyond the stream", `subscription { statusPosted(after: "999") { id } }`, false, nil, "BAD_USER_INPUT"},
		{"a Last-Event-ID that is no position", `subscription { statusPosted { id } }`, false, http.Header{"Last-Event-ID": {"abc"}}, "BAD_REQUEST"},
		{"no query", ``, false, nil, "BAD_REQUEST"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			s := openSSE(t, srv.URL, c.query, nil, c.post, c.header)
			assert.Equal(t, http.StatusOK, s.resp.StatusCode)
			ev, ok := s.next(t)
			require.True(t, ok)
			require.Equal(t, "next", ev.Event)
			r := ev.response(t)
			require.NotEmpty(t, r.Errors, "event %s", ev.Data)
			assert.Equal(t, c.code, r.Errors[0].Code(), "error %+v", r.Errors[0])
			ev, _ = s.next(t)
			assert.Equal(t, "complete", ev.Event)
		})
	}

	// A client that accepts JSON too (urql asks for both) gets JSON for
	// what is not a subscription, and an event stream for a subscription.
	both := http.Header{"Accept": {"application/graphql-response+json, application/json, text/event-stream"}}
	s = openSSE(t, srv.URL, `{ statuses(first: 1) { edges { node { text } } } }`, nil, true, both)
	assert.Equal(t, "application/graphql-response+json; charset=utf-8", s.resp.Header.Get("Content-Type"))
	s = openSSE(t, srv.URL, `subscription { statusPosted(after: "0") { text } }`, nil, true, both)
	assert.Equal(t, "text/event-stream; charset=utf-8", s.resp.Header.Get("Content-Type"))
	ev, _ = s.next(t)
	assert.Contains(t, ev.Data, `"text":"over SSE"`)

	// A token that is not one is refused before anything streams, as over
	// HTTP (401, with the error as JSON).
	s = openSSE(t, srv.URL, `{ __typename }`, nil, false, http.Header{"Authorization": {"Bearer nope"}})
	assert.Equal(t, http.StatusUnauthorized, s.resp.StatusCode)
}

// TestSSEStreamsAreConnections: a subscription's event stream counts as a
// connection: against LIMIT_CONNS_PER_ADDR together with the WebSockets,
// and against LIMIT_CONNS_PER_USER; it gets keepalive comments while idle;
// and signing out ends it with UNAUTHENTICATED, then complete.
func TestSSEStreamsAreConnections(t *testing.T) {
	srv := startServer(t, map[string]string{
		"LIMIT_CONNS_PER_ADDR": "3", "LIMIT_CONNS_PER_USER": "2", "WS_KEEPALIVE": "1s", "DEMO_FEED": "false",
	})
	srv.logsOnFailure(t)
	token := srv.signIn(t, "Cy")
	auth := http.Header{"Authorization": {"Bearer " + token}}
	const query = `subscription { statusPosted { id } }`

	a := openSSE(t, srv.URL, query, nil, false, auth)
	b := openSSE(t, srv.URL, query, nil, false, auth)
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_sse_streams") == 2 }, "two streams open")
	msg := openSSE(t, srv.URL, query, nil, false, auth).finished(t, "RATE_LIMITED")
	assert.Contains(t, msg, "at most 2", "the user's limit")

	// The address holds two streams; one WebSocket more fills it.
	ws := dialWS(t, srv, "graphql-transport-ws", nil)
	ws.init("")
	msg = openSSE(t, srv.URL, query, nil, false, nil).finished(t, "RATE_LIMITED")
	assert.Contains(t, msg, "LIMIT_CONNS_PER_ADDR")
	_, resp, err := websocket.DefaultDialer.Dial(srv.WS(), http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	require.Error(t, err, "a fourth connection from the address")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	// Idle streams get comments, which keep proxies from cutting them.
	deadline := time.After(sseTimeout)
	for comment := false; !comment; {
		select {
		case ev := <-a.events:
			comment = ev.Comment == "keepalive"
		case <-deadline:
			t.Fatal("no keepalive comment")
		}
	}

	// Signing out ends both of the session's streams.
	srv.mustDo(t, token, `mutation { signOut }`, nil, nil)
	for _, s := range []*sseStream{a, b} {
		assert.Contains(t, s.finished(t, "UNAUTHENTICATED"), "session ended")
	}
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_sse_streams") == 0 }, "the streams to be counted closed")
}

// TestGraphQLSSEClient: the standard graphql-sse client (Node, distinct
// connections mode) follows statusPosted with its token in the
// Authorization header; when the server restarts in the middle of the
// stream, the client's own reconnection (the same request, with the last
// id it saw in the variables) resumes after it, so every status arrives
// exactly once, in order.
func TestGraphQLSSEClient(t *testing.T) {
	node, dir := requireNodePackages(t, "jsclient", "graphql-sse")
	env := map[string]string{"DATA_DIR": t.TempDir(), "ADDR": freeLoopbackAddr(t)}
	s1 := startServer(t, env)
	s1.logsOnFailure(t)
	token := s1.signIn(t, "Dee")
	posted := []status{s1.post(t, token, "one")}

	c := startJSClient(t, node, filepath.Join(dir, "sse.mjs"), "--url", s1.URL+"/graphql", "--token", token, "--scenario", "resume", "--want", "4")
	c.requireNext(t, "status", posted[0])
	for _, text := range []string{"two", "three"} {
		st := s1.post(t, token, text)
		posted = append(posted, st)
		c.requireNext(t, "status", st)
	}

	s1.stop()
	c.waitFor(t, "a reconnection attempt", func(e jsEvent) bool { return e.Event == "retry" })
	s2 := startServer(t, env)
	s2.logsOnFailure(t)
	posted = append(posted, s2.post(t, token, "four"))
	c.waitFor(t, "the reconnection", func(e jsEvent) bool { return e.Event == "connected" && e.Retrying })
	c.requireNext(t, "status", posted[3])
	c.requireEveryStatusOnce(t, posted)
}

// TestSSEGzip: a client that accepts gzip gets the event stream gzipped,
// each event decodable as soon as it arrives (not when the stream ends),
// and a stream the server ends is a complete gzip member (its trailer
// checks out); WS_COMPRESSION=false turns it off.
func TestSSEGzip(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("WS_COMPRESSION=%v", on), func(t *testing.T) {
			srv := startServer(t, map[string]string{"WS_COMPRESSION": strconv.FormatBool(on), "DEMO_FEED": "false"})
			srv.logsOnFailure(t)
			token := srv.signIn(t, "Gus")
			// A status as people write them, not a repetition (which would
			// compress unlike any real one).
			text := "Shipping the new dashboard today: KPIs per module update live, the unread badge follows every tab, " +
				"and presence shows who is in each room. Thanks to everyone who tested the beta over the weekend and " +
				"sent notes; the typing indicator fix came from one of them. Next up: search in room lists."

			first := srv.post(t, token, text)

			// A subscription: its first event decodes while the stream is open.
			raw := func(query string) (*http.Response, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/graphql?"+url.Values{"query": {query}}.Encode(), nil)
				require.NoError(t, err)
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Accept-Encoding", "gzip") // set by hand: Go leaves the body as it came
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				t.Cleanup(func() { cancel(); resp.Body.Close() })
				return resp, cancel
			}
			resp, _ := raw(`subscription { statusPosted(after: "0") { id text } }`)
			if !on {
				assert.Empty(t, resp.Header.Get("Content-Encoding"))
				return
			}
			require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
			counted := &countingReader{r: resp.Body}
			zr, err := gzip.NewReader(counted)
			require.NoError(t, err)
			lines := bufio.NewScanner(zr)
			var data string
			for found := false; !found && lines.Scan(); {
				data, found = strings.CutPrefix(lines.Text(), "data: ")
			}
			assert.Contains(t, data, `"id":"`+first.ID+`"`, "the first event, decoded while the stream is open")
			assert.Contains(t, data, text)
			t.Logf("a status of %d characters: %d bytes of event stream (with the retry line) in %d gzipped", len(text), len("retry: 1000\n\nevent: next\nid: 1\ndata: \n\n")+len(data), counted.n)

			// A query's stream ends with complete and a whole gzip member.
			resp, _ = raw(`{ statuses(first: 1) { edges { node { id } } } }`)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			zr, err = gzip.NewReader(bytes.NewReader(body))
			require.NoError(t, err)
			plain, err := io.ReadAll(zr)
			require.NoError(t, err, "the gzip member is whole: its CRC and size check out")
			assert.True(t, strings.HasSuffix(string(plain), "event: complete\ndata:\n\n"), "stream: %q", plain)
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestSSEStreamsShareDelivery: event streams of one document share one
// execution once they have caught up, whatever cursor each started from
// (after, Last-Event-ID, none), while statuses are being posted; each
// still gets every status once, in order, with its position as id. The
// group ends with its last stream.
func TestSSEStreamsShareDelivery(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_STATUSES": "0"})
	srv.logsOnFailure(t)
	token := srv.signIn(t, "Sam")
	const query = `subscription($a: ID) { statusPosted(after: $a) { id text } }`
	const total = 60

	// A poster, while the streams open one by one.
	posted := make(chan status, total)
	go func() {
		for i := range total {
			posted <- srv.post(t, token, fmt.Sprintf("status %d", i+1))
			time.Sleep(5 * time.Millisecond)
		}
		close(posted)
	}()
	var streams []*sseStream
	var froms []int
	for i := range 6 {
		time.Sleep(40 * time.Millisecond)
		switch i % 3 {
		case 0: // from the beginning
			streams = append(streams, openSSE(t, srv.URL, query, map[string]any{"a": "0"}, false, nil))
			froms = append(froms, 0)
		case 1: // resuming from an id, whatever after says
			streams = append(streams, openSSE(t, srv.URL, query, map[string]any{"a": "0"}, false, http.Header{"Last-Event-ID": {"3"}}))
			froms = append(froms, 3)
		case 2: // from the beginning, through a variable-less cursor
			streams = append(streams, openSSE(t, srv.URL, `subscription { statusPosted(after: "0") { id text } }`, nil, false, nil))
			froms = append(froms, 0)
		}
	}
	var all []status
	for st := range posted {
		all = append(all, st)
	}
	require.Len(t, all, total)
	for i, s := range streams {
		for _, want := range all[froms[i]:] {
			got, id := s.nextStatus(t)
			require.Equal(t, want.ID, got.ID, "stream %d", i)
			require.Equal(t, want.ID, id, "stream %d", i)
		}
	}
	// Caught up: the streams with the variable share one group; the one
	// with a literal cursor runs on its own (its document differs).
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 1 }, "one group")
	live := srv.post(t, token, "after all")
	for i, s := range streams {
		got, _ := s.nextStatus(t)
		assert.Equal(t, live.ID, got.ID, "stream %d", i)
	}

	for _, s := range streams {
		s.close()
	}
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 0 }, "the group to end with its streams")
}

// TestSSEMessageAddedKeepsPresence: following a room's messages over an
// event stream makes the caller online in the room for as long as the
// stream lasts, also once the stream has joined a shared group, and no
// longer: when the user whose stream started the group leaves, that user
// goes offline while the group serves the others.
func TestSSEMessageAddedKeepsPresence(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	general := srv.generalRoom(t)
	ann, ben := srv.chatUser(t, "ann"), srv.chatUser(t, "ben")
	online := func() []string {
		var d struct{ Online []user }
		srv.mustDo(t, "", `query($r: ID!) { online(roomId: $r) { id name } }`, map[string]any{"r": general.ID}, &d)
		return names(d.Online)
	}
	const query = `subscription($r: ID!, $a: ID) { messageAdded(roomId: $r, after: $a) { id text } }`
	follow := func(u chatUser) *sseStream {
		return openSSE(t, srv.URL, query, map[string]any{"r": general.ID, "a": "0"}, false, http.Header{"Authorization": {"Bearer " + u.token}})
	}
	a := follow(ann)
	first := srv.postMessage(t, ann.token, general.ID, "hello")
	ev, _ := a.next(t)
	require.Contains(t, ev.Data, first)
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 1 }, "ann's stream in a group")
	b := follow(ben)
	ev, _ = b.next(t)
	require.Contains(t, ev.Data, first)
	require.Eventually(t, func() bool { return slices.Equal(online(), []string{"ann", "ben"}) }, sseTimeout, 20*time.Millisecond,
		"both online while their streams are shared: %v", online())
	// And still, past the grace a leaving user gets (their private
	// executions stopped when they joined the group).
	assert.Never(t, func() bool { return !slices.Equal(online(), []string{"ann", "ben"}) }, chat.DefaultLeaveGrace+time.Second, 100*time.Millisecond,
		"both stay online while their streams are shared")

	// ann's stream started the group; she leaves, the group goes on for ben.
	a.close()
	require.Eventually(t, func() bool { return slices.Equal(online(), []string{"ben"}) }, sseTimeout, 20*time.Millisecond,
		"ann offline once her stream has gone: %v", online())
	second := srv.postMessage(t, ben.token, general.ID, "still here")
	ev, _ = b.next(t)
	assert.Contains(t, ev.Data, second)
	assert.EqualValues(t, 1, srv.metric(t, "switchboard_shared_subscriptions"), "the group serves ben")

	b.close()
	require.Eventually(t, func() bool { return len(online()) == 0 }, sseTimeout, 20*time.Millisecond, "nobody online: %v", online())
}

// TestSSELatestValuesShareDelivery: event streams of a latest-value field
// (kpiUpdated) share one execution once each has written its first value;
// each gets every new value, a stream that joins late starts from the
// current one, and none gets a value twice.
func TestSSELatestValuesShareDelivery(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	const query = `subscription { kpiUpdated(module: "sales") { module kpis { key value } } }`
	value := func(tb testing.TB, s *sseStream) float64 {
		tb.Helper()
		ev, ok := s.next(tb)
		require.True(tb, ok, "the stream ended")
		var d struct {
			KpiUpdated struct {
				Kpis []struct {
					Key   string
					Value float64
				}
			}
		}
		r := ev.response(tb)
		require.Empty(tb, r.Errors, ev.Data)
		require.NoError(tb, json.Unmarshal(r.Data, &d))
		require.Empty(tb, ev.ID, "a value has no position")
		for _, k := range d.KpiUpdated.Kpis {
			if k.Key == "deals" {
				return k.Value
			}
		}
		return -1 // no value yet
	}
	srv.recordKPI(t, admin, map[string]any{"module": "sales", "key": "deals", "value": 1})

	var streams []*sseStream
	for range 3 {
		s := openSSE(t, srv.URL, query, nil, false, nil)
		assert.EqualValues(t, 1, value(t, s), "the current value first")
		streams = append(streams, s)
	}
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 1 }, "one group")
	for v := 2; v <= 4; v++ {
		srv.recordKPI(t, admin, map[string]any{"module": "sales", "key": "deals", "value": v})
		for i, s := range streams {
			assert.EqualValues(t, v, value(t, s), "stream %d", i)
		}
	}
	late := openSSE(t, srv.URL, query, nil, false, nil)
	assert.EqualValues(t, 4, value(t, late), "a late stream starts from the current value")
	streams = append(streams, late)
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 1 }, "still one group")
	srv.recordKPI(t, admin, map[string]any{"module": "sales", "key": "deals", "value": 5})
	for i, s := range streams {
		assert.EqualValues(t, 5, value(t, s), "stream %d", i)
	}
	// Nothing else came: each value once.
	time.Sleep(100 * time.Millisecond)
	for i, s := range streams {
		select {
		case ev := <-s.events:
			assert.NotEqual(t, "next", ev.Event, "stream %d: %s", i, ev.Data)
		default:
		}
	}
}

// TestSSENotificationsShareOneGroup: every user's notification streams
// over SSE share one group, which queues each notification for the users
// it is for (a broadcast for all), once per stream; the distinct documents
// one user alone can make the server lead at once are bounded, the
// streams over the bound running on their own and missing nothing.
func TestSSENotificationsShareOneGroup(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	ann, ben := srv.chatUser(t, "ann"), srv.chatUser(t, "ben")
	open := func(u chatUser, selection string) *sseStream {
		return openSSE(t, srv.URL, `subscription($a: ID) { notificationAdded(after: $a) { `+selection+` } }`,
			map[string]any{"a": "0"}, false, http.Header{"Authorization": {"Bearer " + u.token}})
	}
	title := func(tb testing.TB, s *sseStream) string {
		tb.Helper()
		ev, ok := s.next(tb)
		require.True(tb, ok, "the stream ended")
		var d struct{ NotificationAdded struct{ Title string } }
		r := ev.response(tb)
		require.Empty(tb, r.Errors, ev.Data)
		require.NoError(tb, json.Unmarshal(r.Data, &d))
		return d.NotificationAdded.Title
	}
	send := func(to *chatUser, t0 string) {
		in := map[string]any{"title": t0}
		if to != nil {
			in["userId"] = to.ID
		}
		srv.sendNotification(t, admin, in)
	}

	send(nil, "welcome") // replayed from after 0 to everyone
	annTabs := []*sseStream{open(ann, "id title"), open(ann, "id title")}
	benTab := open(ben, "id title")
	for _, s := range append(annTabs, benTab) {
		assert.Equal(t, "welcome", title(t, s))
	}
	waitUntil(t, sseTimeout, func() bool { return srv.metric(t, "switchboard_shared_subscriptions") == 1 }, "one group for both users")

	send(&ann, "for ann")
	send(&ben, "for ben")
	send(nil, "for all")
	for i, s := range annTabs {
		assert.Equal(t, "for ann", title(t, s), "ann's tab %d", i)
		assert.Equal(t, "for all", title(t, s), "ann's tab %d", i)
	}
	assert.Equal(t, "for ben", title(t, benTab))
	assert.Equal(t, "for all", title(t, benTab))

	// Four more documents of ann's alone: at most gqlws.MaxOwnSpanningKeys
	// groups serve nobody but her; the stream over that runs on its own.
	selections := []string{"id title body", "id title level", "id title link", "id title read", "id title createdAt"}
	var own []*sseStream
	for _, sel := range selections {
		s := open(ann, sel)
		for _, want := range []string{"welcome", "for ann", "for all"} {
			assert.Equal(t, want, title(t, s), sel)
		}
		own = append(own, s)
	}
	waitUntil(t, sseTimeout, func() bool {
		return srv.metric(t, "switchboard_shared_subscriptions") == float64(1+gqlws.MaxOwnSpanningKeys)
	}, "the shared group and ann's own, up to the bound")
	send(&ann, "last")
	for _, s := range append(own, annTabs...) {
		assert.Equal(t, "last", title(t, s))
	}
}

// TestSSETokenExpiryEndsTheStream: a subscription's stream, shared with
// others or not, ends when its token expires: an UNAUTHENTICATED error,
// then complete, as the WebSockets close with 4403.
func TestSSETokenExpiryEndsTheStream(t *testing.T) {
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	token := srv.mintToken(t, "brief", 3*time.Second)
	auth := http.Header{"Authorization": {"Bearer " + token}}
	streams := []*sseStream{
		openSSE(t, srv.URL, `subscription { statusPosted { id } }`, nil, false, auth),             // joins its group at once
		openSSE(t, srv.URL, `subscription { statusPosted(after: "0") { id } }`, nil, false, auth), // a literal cursor: on its own
	}
	require.Equal(t, http.StatusOK, streams[0].resp.StatusCode)
	require.Equal(t, http.StatusOK, streams[1].resp.StatusCode)
	for i, s := range streams {
		assert.Contains(t, s.finished(t, "UNAUTHENTICATED"), "token expired", "stream %d", i)
	}
}

// sseData reads s's next event, which must be a next event of field
// without errors and without an id (its field has no position to resume
// from), into v.
func sseData(tb testing.TB, s *sseStream, field string, v any) {
	tb.Helper()
	ev, ok := s.next(tb)
	require.True(tb, ok, "the stream ended")
	require.Equal(tb, "next", ev.Event, "event %+v", ev)
	require.Empty(tb, ev.ID, "an event of %s has no position", field)
	r := ev.response(tb)
	require.Empty(tb, r.Errors, ev.Data)
	var d map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(r.Data, &d))
	require.Contains(tb, d, field, ev.Data)
	require.NoError(tb, json.Unmarshal(d[field], v))
}

// sseUntil reads s's events of field until done accepts one, which it
// returns; the test fails if none does within sseTimeout.
func sseUntil[T any](tb testing.TB, s *sseStream, field string, done func(T) bool) T {
	tb.Helper()
	deadline := time.Now().Add(sseTimeout)
	var seen []T
	for time.Now().Before(deadline) {
		var v T
		sseData(tb, s, field, &v)
		if done(v) {
			return v
		}
		seen = append(seen, v)
	}
	tb.Fatalf("no %s event as expected within %v; saw %+v", field, sseTimeout, seen)
	var zero T
	return zero
}

// TestSSEUnreadCountsShareOneGroup: every user's unreadCount streams share
// one group, as on the WebSockets, and each stream still follows its own
// user's count only: through broadcasts that move every count at once
// (one event for the users whose counts are alike), a user's own
// notifications and reads, and after a user's streams closed and one came
// back.
func TestSSEUnreadCountsShareOneGroup(t *testing.T) {
	s := startOpsServer(t, map[string]string{"LIMIT_REQUESTS": "0"})
	s.logsOnFailure(t)
	users := []chatUser{s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")}
	alice, bob := &users[0], &users[1]
	s.send(t, alice, "before")

	streams := make([][]*sseStream, len(users))
	open := func(user int) *sseStream {
		st := openSSE(t, s.URL, `subscription { unreadCount }`, nil, false, http.Header{"Authorization": {"Bearer " + users[user].token}})
		streams[user] = append(streams[user], st)
		return st
	}
	count := func(st *sseStream) int {
		var n int
		sseData(t, st, "unreadCount", &n)
		return n
	}
	// expect reads each stream's counts until it shows want[user]: a stream
	// may skip intermediate counts, never show another user's.
	expect := func(want ...int) {
		t.Helper()
		for u, ss := range streams {
			for i, st := range ss {
				got := sseUntil(t, st, "unreadCount", func(n int) bool { return n >= want[u] })
				assert.Equal(t, want[u], got, "%s's stream %d", users[u].Name, i)
			}
		}
	}
	for u := range users {
		for range 2 {
			assert.Equal(t, map[int]int{0: 1}[u], count(open(u)), "%s starts with the current count", users[u].Name)
		}
	}
	waitUntil(t, sseTimeout, func() bool { return s.metric(t, "switchboard_shared_subscriptions") == 1 }, "one group for every user")
	s.send(t, nil, "b1")
	expect(2, 1, 1)

	s.send(t, bob, "for bob")
	s.send(t, nil, "b2")
	expect(3, 3, 2)
	var d struct{ MarkAllNotificationsRead int }
	s.mustDo(t, bob.token, `mutation { markAllNotificationsRead }`, nil, &d)
	require.Equal(t, 3, d.MarkAllNotificationsRead)
	for i, st := range streams[1] {
		assert.Equal(t, 0, count(st), "bob's stream %d sees his read", i)
	}

	// Carol leaves; her count is hers again when she comes back.
	for _, st := range streams[2] {
		st.close()
	}
	streams[2] = nil
	s.send(t, nil, "b3")
	expect(4, 1)
	back := open(2)
	assert.Equal(t, 3, count(back), "carol's count, read again")
	waitUntil(t, sseTimeout, func() bool { return s.metric(t, "switchboard_shared_subscriptions") == 1 }, "carol's new stream in the group")
	s.send(t, alice, "for alice")
	s.send(t, nil, "b4")
	expect(6, 2, 4)
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every count")
	assert.Equal(t, 5.0, s.metric(t, `switchboard_subscriptions{field="unreadCount"}`), "the streams count as subscriptions")
}

// TestSSERoomListsShareOneGroup: every user's roomsChanged streams share
// one group from the moment they start, as on the WebSockets, and each
// stream still sees its own list: its own unread counts, a direct room
// under the other member's name, and nothing of the direct rooms of
// others.
func TestSSERoomListsShareOneGroup(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_MESSAGES": "0", "LIMIT_SIGNINS": "0"})
	s.logsOnFailure(t)
	general := s.generalRoom(t)
	alice, bob, carol := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")
	for _, u := range []chatUser{alice, bob, carol} {
		s.mustDo(t, u.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
	}
	open := func(u chatUser) *sseStream {
		return openSSE(t, s.URL, `subscription { roomsChanged { `+roomFields+` lastMessage { text } } }`, nil, false,
			http.Header{"Authorization": {"Bearer " + u.token}})
	}
	aliceTabs := []*sseStream{open(alice), open(alice)}
	bobTab, carolTab := open(bob), open(carol)
	// Every stream runs before the first message: a list changes for the
	// users watching at the moment of the change.
	waitUntil(t, sseTimeout, func() bool {
		return s.metric(t, `switchboard_subscriptions{field="roomsChanged"}`) == 4 && s.metric(t, "switchboard_shared_subscriptions") == 1
	}, "four streams, in one group before any event")

	type entry struct {
		room
		LastMessage *struct{ Text string } `json:"lastMessage"`
	}
	// showing reads st's entries until one shows the message text in roomID.
	showing := func(st *sseStream, roomID, text string) entry {
		return sseUntil(t, st, "roomsChanged", func(e entry) bool {
			return e.ID == roomID && e.LastMessage != nil && e.LastMessage.Text == text
		})
	}
	s.postMessage(t, alice.token, general.ID, "hello")
	for i, st := range aliceTabs {
		assert.Zero(t, showing(st, general.ID, "hello").UnreadCount, "alice's tab %d: her own message", i)
	}
	for _, st := range []*sseStream{bobTab, carolTab} {
		assert.Equal(t, 1, showing(st, general.ID, "hello").UnreadCount, "bob's and carol's lists")
	}

	direct := s.openDirect(t, bob.token, carol.ID)
	s.postMessage(t, bob.token, direct.ID, "psst")
	for st, name := range map[*sseStream]string{bobTab: "carol", carolTab: "bob"} {
		got := showing(st, direct.ID, "psst")
		assert.Equal(t, name, got.Name, "a direct room is named after the other member")
		assert.Equal(t, map[string]int{"carol": 0, "bob": 1}[name], got.UnreadCount)
	}
	s.postMessage(t, carol.token, general.ID, "again")
	for i, st := range aliceTabs {
		var got entry
		sseData(t, st, "roomsChanged", &got)
		assert.Equal(t, general.ID, got.ID, "alice's tab %d saw nothing of bob and carol's room", i)
		if got.ID != general.ID || got.LastMessage.Text != "again" {
			got = showing(st, general.ID, "again")
		}
		assert.Equal(t, 1, got.UnreadCount)
	}

	// A stream that starts while the group runs joins it at its head: it
	// gets what happens from then on, nothing before.
	late := open(alice)
	waitUntil(t, sseTimeout, func() bool { return s.metric(t, `switchboard_subscriptions{field="roomsChanged"}`) == 5 }, "the late stream running")
	s.postMessage(t, bob.token, general.ID, "late")
	var got entry
	sseData(t, late, "roomsChanged", &got)
	require.NotNil(t, got.LastMessage, "%+v", got)
	assert.Equal(t, "late", got.LastMessage.Text, "the late stream's first entry: nothing from before it started")
	assert.Equal(t, 2, got.UnreadCount, "alice has read neither carol's message nor bob's")
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every room list")
}
