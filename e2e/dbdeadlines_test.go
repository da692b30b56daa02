package e2e

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// The scenario of TestDatabaseHangsUnderTraffic. DB_TIMEOUT is 2 s there
// (the default is 5 s) to keep the test short; every bound below follows
// from it.
const (
	hangDBTimeout = 2 * time.Second
	hangFor       = 30 * time.Second
	hangClients   = 100
	hangInterval  = 500 * time.Millisecond // per client: 200 requests a second in all
	// hangMargin is what an answer may take beyond DB_TIMEOUT: the
	// process's own work, on a shared, race-instrumented machine.
	hangMargin = time.Second
	// hangGoroutines bounds the server's goroutines during the fault. A
	// quiet server with these clients runs about 40 (their requests share a
	// few connections). During the fault each client has a request in
	// flight: its connection's goroutine and that connection's background
	// reader (200), the pool's connections a watcher each (32): some 270 in
	// all. Requests that piled up behind the database would pass the bound
	// within seconds.
	hangGoroutines = 400
	// hangPool is the MySQL pools' size: 32, and 16 for append batches.
	hangPool = 48
)

// TestDatabaseHangsUnderTraffic: the MariaDB behind a server stops
// answering for 30 s (the network path holds every byte, as for a
// blackholed database or a mariadbd stopped with SIGSTOP) while 100
// clients keep posting statuses with idempotency keys, reading the feed,
// asking who they are and saying they type. No request waits on the hung
// database longer than DB_TIMEOUT and a margin: it answers, the failures
// as UNAVAILABLE, or the database answers again first; /readyz says 503
// within 2 s; a WebSocket's connection_init answers in time too; the
// server's goroutines and database connections stay under fixed bounds.
// When the database answers again, everything works without a restart:
// requests succeed, /readyz is 200, a subscriber receives the new
// statuses in order without a gap; and every write that was acknowledged
// is stored exactly once, as is every failed one its client sent again
// with its key.
func TestDatabaseHangsUnderTraffic(t *testing.T) {
	dbURL := storetest.MySQLURL(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := faultproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	s := startProcess(t, map[string]string{"DATABASE_URL": u.String(), "DB_TIMEOUT": hangDBTimeout.String(),
		"LIMIT_REQUESTS": "0", "LIMIT_STATUSES": "0", "LIMIT_TYPING": "0", "LIMIT_SIGNINS": "0", "LIMIT_CONNS_PER_USER": "0"})
	s.logsOnFailure(t)
	general := s.generalRoom(t)
	late := s.mintToken(t, "late", time.Hour) // a session the server has not seen yet
	watcher := s.signIn(t, "watcher")
	sub := collect(t, s, watcher, statusFeed, false)
	sub.waitLive(t, func() { s.post(t, watcher, "warm-up") })
	load := startLoad(t, s, general.ID)
	probe := startProbe(t, s)
	waitFor(3 * time.Second) // traffic before the fault

	stallAt := time.Now()
	probe.mark("during")
	proxy.Stall()
	notReady := waitUntil(t, 5*time.Second, func() bool { return readyStatus(s) == http.StatusServiceUnavailable }, "/readyz answers 503")
	wsInit := timeInit(t, s, late)
	waitFor(hangFor - time.Since(stallAt))

	forwardAt := time.Now()
	probe.mark("after")
	proxy.Forward()
	recovered := waitUntil(t, 20*time.Second, func() bool {
		return readyStatus(s) == http.StatusOK && load.succeededSince(forwardAt)
	}, "/readyz is 200 and a write succeeds")
	recoveredAt := time.Now()
	waitFor(3 * time.Second) // traffic after the fault
	load.stop()
	probe.stop()

	during := load.stats(stallAt, forwardAt)
	t.Logf("database hung %s under %d clients (DB_TIMEOUT %s): /readyz 503 after %s; connection_init answered (%s) in %s; first UNAVAILABLE after %s",
		hangFor, hangClients, hangDBTimeout, notReady.Round(time.Millisecond), wsInit.answer, wsInit.took.Round(time.Millisecond), during.firstErr.Sub(stallAt).Round(time.Millisecond))
	t.Logf("requests during the fault: %d (%d UNAVAILABLE, %d other errors, %d answered), latency p50 %s p99 %s max %s; held by the hang at most %s; answered at most %s after the database answered",
		during.n, during.unavailable, during.otherErr, during.n-during.unavailable-during.otherErr,
		during.p50.Round(time.Millisecond), during.p99.Round(time.Millisecond), during.max.Round(time.Millisecond),
		during.held.Round(time.Millisecond), during.past.Round(time.Millisecond))
	t.Logf("goroutines: max %d before, %d during, %d after; database connections: max %.0f during; recovered %s after the database answered",
		probe.max("before").goroutines, probe.max("during").goroutines, probe.max("after").goroutines, probe.max("during").conns, recovered.Round(time.Millisecond))
	assert.Less(t, notReady, 2*time.Second, "/readyz says 503 within 2 s of the hang")
	assert.Less(t, wsInit.took, hangDBTimeout+hangMargin, "connection_init answers in time")
	assert.Equal(t, 1013, wsInit.closeCode, "a session that cannot be checked is 1013, try again later, not 4403: %s", wsInit.answer)
	for _, r := range during.slowest {
		t.Logf("held longest: %s sent %s after the hang began, answered in %s: %q %s", r.op, r.start.Sub(stallAt).Round(time.Millisecond),
			r.end.Sub(r.start).Round(time.Millisecond), r.code, r.message)
	}
	// What the hang costs a request is the time it waits while the
	// database does not answer: a request sent before the hang may have
	// taken its time on a busy machine before, and one sent in the last
	// seconds of the hang waits for the database until it answers again,
	// then does the rest of its work among everyone else's, soon after.
	assert.Less(t, during.held, hangDBTimeout+hangMargin, "every request held by the hung database answers within DB_TIMEOUT and a margin")
	assert.Less(t, during.past, hangDBTimeout+hangMargin, "the requests in flight when the database answers again answer soon after")
	assert.Positive(t, during.unavailable, "the hang was noticed")
	assert.Zero(t, during.otherErr, "every failure is UNAVAILABLE: %v", during.examples)
	assert.Less(t, probe.max("during").goroutines, hangGoroutines, "the goroutines stay bounded")
	assert.LessOrEqual(t, probe.max("during").conns, float64(hangPool), "the connections stay within the pool")
	// A request sent during the hang may still fail after recovery: it
	// waited in a batch that ran until the earliest deadline of its
	// appends, all of them sent during the hang (its time is bounded
	// above). Every request sent after recovery succeeds.
	after := load.stats(recoveredAt, time.Now(), sentSince(recoveredAt))
	assert.Zero(t, after.unavailable+after.otherErr, "after recovery every request succeeds: %v", after.examples)
	assert.Positive(t, after.n)

	acked := load.ackedIDs()
	sub.check(t, acked)
	checkWritesOnce(t, s, dbURL, load)
}

// readyStatus returns /readyz's HTTP status, 0 when it did not answer
// within 3 s.
func readyStatus(s *testServer) int {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(s.URL + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// initTiming is how a WebSocket's connection_init went: the answer (a
// message type, or the close) and how long it took.
type initTiming struct {
	answer    string
	closeCode int
	took      time.Duration
}

// timeInit opens a WebSocket and times connection_init with token.
func timeInit(t *testing.T, s *testServer, token string) initTiming {
	c := dialWS(t, s, "graphql-transport-ws", nil)
	start := time.Now()
	c.send("connection_init", "", map[string]any{"authorization": "Bearer " + token})
	m, err := c.tryRead(10 * time.Second)
	took := time.Since(start)
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return initTiming{answer: fmt.Sprintf("close %d %q", ce.Code, ce.Text), closeCode: ce.Code, took: took}
	case err != nil:
		return initTiming{answer: err.Error(), took: took}
	}
	return initTiming{answer: m.Type, took: took}
}

// ---- The clients ----

// hangLoad is the traffic of startLoad: every request's time, operation
// and outcome, and the writes with their keys.
type hangLoad struct {
	client  *http.Client
	stopped chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	results []hangResult
}

// hangResult is one request: code is "" for a success, the GraphQL
// error's code, or the transport's error.
type hangResult struct {
	op         string
	start, end time.Time
	code       string
	message    string
	// For postStatus: its text, key and token, and the id it answered.
	text, key, token, id string
}

// The operations the clients send in turn.
var hangOps = []struct{ name, query string }{
	{"postStatus", keyedPostStatus},
	{"statuses", `{ statuses(first: 5) { edges { node { id text author { name } } } } }`},
	{"me", `{ me { id name } }`},
	{"setTyping", `mutation($r: ID!) { setTyping(roomId: $r, typing: true) }`},
}

// startLoad signs in hangClients users and starts them: each sends one of
// hangOps, in turn, every hangInterval, until stop.
func startLoad(t *testing.T, s *testServer, roomID string) *hangLoad {
	l := &hangLoad{
		client:  &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: hangClients}},
		stopped: make(chan struct{}),
	}
	tokens := make([]string, hangClients)
	for i := range tokens {
		tokens[i] = s.signIn(t, fmt.Sprintf("client%d", i))
	}
	for i, token := range tokens {
		l.wg.Go(func() {
			// Spread the clients over the interval.
			select {
			case <-l.stopped:
				return
			case <-time.After(hangInterval * time.Duration(i) / hangClients):
			}
			tick := time.NewTicker(hangInterval)
			defer tick.Stop()
			for n := i; ; n++ {
				op := hangOps[n%len(hangOps)]
				vars := map[string]any{"r": roomID}
				r := hangResult{op: op.name, token: token}
				if op.name == "postStatus" {
					r.text, r.key = fmt.Sprintf("c%d-%d", i, n), fmt.Sprintf("k%d-%d", i, n)
					vars = map[string]any{"t": r.text, "k": r.key}
				}
				l.send(s, op.query, vars, r)
				select {
				case <-l.stopped:
					return
				case <-tick.C:
				}
			}
		})
	}
	t.Cleanup(func() {
		l.stop()
		l.client.CloseIdleConnections()
	})
	return l
}

// send sends one request and records it.
func (l *hangLoad) send(s *testServer, query string, vars map[string]any, r hangResult) {
	r.start = time.Now()
	r.id, r.code, r.message = l.post(s, r.token, query, vars)
	r.end = time.Now()
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// post sends a GraphQL request and returns the id of the first field's
// answer (when it has one), or the error's code and message.
func (l *hangLoad) post(s *testServer, token, query string, vars map[string]any) (id, code, message string) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", "transport", err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := l.client.Do(req)
	if err != nil {
		return "", "transport", err.Error()
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "transport", err.Error()
	}
	var out struct {
		Data   map[string]json.RawMessage `json:"data"`
		Errors []gqlError                 `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", "transport", fmt.Sprintf("status %d: %s", resp.StatusCode, raw)
	}
	if len(out.Errors) > 0 {
		return "", out.Errors[0].Code(), out.Errors[0].Message
	}
	var first struct{ ID string }
	for _, v := range out.Data {
		_ = json.Unmarshal(v, &first)
	}
	return first.ID, "", ""
}

// stop ends the clients and waits for them. Only the first call has an
// effect.
func (l *hangLoad) stop() {
	l.mu.Lock()
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// succeededSince reports whether a postStatus sent at since or later
// succeeded.
func (l *hangLoad) succeededSince(since time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range slices.Backward(l.results) {
		if r.op == "postStatus" && r.code == "" && !r.start.Before(since) {
			return true
		}
	}
	return false
}

// snapshot returns the requests so far.
func (l *hangLoad) snapshot() []hangResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// ackedIDs returns the ids of the statuses whose post was answered.
func (l *hangLoad) ackedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, r := range l.results {
		if r.op == "postStatus" && r.code == "" {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// loadStats sums up the requests under way at some time in a window.
type loadStats struct {
	n, unavailable, otherErr int
	firstErr                 time.Time // the end of the first failure
	p50, p99, max            time.Duration
	examples                 []string // of other errors
	// held is the longest a request waited between from and to (see
	// hangResult.heldBetween); past is the longest a request answered
	// after to took beyond it.
	held, past time.Duration
	slowest    []hangResult // the three requests held longest, longest first
}

// heldBetween is how long r waited between from and to: from its sending
// (or from, if it was sent earlier) to its answer (or to, if it was
// answered later).
func (r hangResult) heldBetween(from, to time.Time) time.Duration {
	start, end := r.start, r.end
	if start.Before(from) {
		start = from
	}
	if end.After(to) {
		end = to
	}
	return end.Sub(start)
}

// sentSince keeps, of the requests stats sums up, those sent at t or later.
func sentSince(t time.Time) func(hangResult) bool {
	return func(r hangResult) bool { return !r.start.Before(t) }
}

// stats sums up the requests that ended at from or later and started
// before to, and that every one of keep keeps.
func (l *hangLoad) stats(from, to time.Time, keep ...func(hangResult) bool) loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st loadStats
	var lat []time.Duration
	for _, r := range l.results {
		if r.end.Before(from) || !r.start.Before(to) || slices.ContainsFunc(keep, func(k func(hangResult) bool) bool { return !k(r) }) {
			continue
		}
		st.slowest = append(st.slowest, r)
		st.n++
		lat = append(lat, r.end.Sub(r.start))
		st.held = max(st.held, r.heldBetween(from, to))
		st.past = max(st.past, r.end.Sub(to))
		switch r.code {
		case "":
			continue
		case "UNAVAILABLE":
			st.unavailable++
		default:
			st.otherErr++
			if len(st.examples) < 5 {
				st.examples = append(st.examples, fmt.Sprintf("%s: %s %s", r.op, r.code, r.message))
			}
		}
		if st.firstErr.IsZero() || r.end.Before(st.firstErr) {
			st.firstErr = r.end
		}
	}
	if len(lat) == 0 {
		return st
	}
	slices.Sort(lat)
	slices.SortFunc(st.slowest, func(a, b hangResult) int { return cmp.Compare(b.heldBetween(from, to), a.heldBetween(from, to)) })
	st.slowest = st.slowest[:min(3, len(st.slowest))]
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	st.p50, st.p99, st.max = at(0.50), at(0.99), lat[len(lat)-1]
	return st
}

// checkWritesOnce checks, in the database itself, that every status whose
// post was answered is stored once, and that every failed one is stored
// at most once; then it sends each failed one again with its key, as its
// client would, and checks that each is now stored exactly once.
func checkWritesOnce(t *testing.T, s *testServer, dbURL string, l *hangLoad) {
	t.Helper()
	var acked, failed []hangResult
	for _, r := range l.snapshot() {
		switch {
		case r.op != "postStatus":
		case r.code == "":
			acked = append(acked, r)
		default:
			failed = append(failed, r)
		}
	}
	stored := storedTexts(t, dbURL)
	lost, duplicated, storedAnyway := 0, 0, 0
	for _, r := range acked {
		switch n := stored[r.text]; {
		case n == 0:
			lost++
		case n > 1:
			duplicated++
		}
	}
	for _, r := range failed {
		switch n := stored[r.text]; {
		case n == 1:
			storedAnyway++
		case n > 1:
			duplicated++
		}
	}
	for _, r := range failed {
		for attempt := 0; ; attempt++ {
			_, code, message := l.post(s, r.token, keyedPostStatus, map[string]any{"t": r.text, "k": r.key})
			if code == "" {
				break
			}
			require.Less(t, attempt, 3, "retry of %s: %s %s", r.text, code, message)
		}
	}
	stored = storedTexts(t, dbURL)
	notOnce := 0
	for _, r := range slices.Concat(acked, failed) {
		if stored[r.text] != 1 {
			notOnce++
		}
	}
	t.Logf("writes: %d acknowledged, %d failed (%d of them stored anyway: their retries got the stored answer); %d lost, %d duplicated; after retrying the failed ones with their keys, %d not stored exactly once",
		len(acked), len(failed), storedAnyway, lost, duplicated, notOnce)
	assert.Zero(t, lost, "no acknowledged write is lost")
	assert.Zero(t, duplicated, "no write is stored twice")
	assert.Zero(t, notOnce, "every write, retried with its key, is stored exactly once")
}

// storedTexts counts the statuses by text, read from the database itself.
func storedTexts(t *testing.T, dbURL string) map[string]int {
	t.Helper()
	dsn, err := store.MySQLDSN(dbURL, 10*time.Second)
	require.NoError(t, err)
	db, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT text, COUNT(*) FROM statuses GROUP BY text")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var text string
		var n int
		require.NoError(t, rows.Scan(&text, &n))
		out[text] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// ---- The probe of the server's goroutines and connections ----

// hangProbe reads the server's go_goroutines and
// switchboard_database_connections every 200 ms, and keeps each phase's
// highest.
type hangProbe struct {
	stopped chan struct{}
	done    chan struct{}

	mu    sync.Mutex
	phase string
	highs map[string]probeSample
}

type probeSample struct {
	goroutines int
	conns      float64
}

var (
	goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\S+)$`)
	dbConnsRE    = regexp.MustCompile(`(?m)^switchboard_database_connections (\S+)$`)
)

// startProbe starts probing s, in the phase "before"; stop ends it.
func startProbe(t *testing.T, s *testServer) *hangProbe {
	p := &hangProbe{stopped: make(chan struct{}), done: make(chan struct{}), phase: "before", highs: map[string]probeSample{}}
	c := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			p.sample(c, s)
			select {
			case <-p.stopped:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// sample reads /metrics once.
func (p *hangProbe) sample(c *http.Client, s *testServer) {
	resp, err := c.Get(s.URL + "/metrics")
	if err != nil {
		return
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var got probeSample
	if m := goroutinesRE.FindSubmatch(raw); m != nil {
		got.goroutines, _ = strconv.Atoi(string(m[1]))
	}
	if m := dbConnsRE.FindSubmatch(raw); m != nil {
		got.conns, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	high := p.highs[p.phase]
	high.goroutines, high.conns = max(high.goroutines, got.goroutines), max(high.conns, got.conns)
	p.highs[p.phase] = high
}

// mark starts phase now.
func (p *hangProbe) mark(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

// max returns the highest samples of phase.
func (p *hangProbe) max(phase string) probeSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.highs[phase]
}

// stop ends the probe. Only the first call has an effect.
func (p *hangProbe) stop() {
	p.mu.Lock()
	select {
	case <-p.stopped:
	default:
		close(p.stopped)
	}
	p.mu.Unlock()
	<-p.done
}
