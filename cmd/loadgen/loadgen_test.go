package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/models"
)

// startBaseline serves the baseline in-process on a loopback port and
// returns its base URL.
func startBaseline(t *testing.T) string {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs after the server's cleanup
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := newBaseline()
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		b.Close()
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return "http://" + ln.Addr().String()
}

// runJSON runs loadgen with args plus -json and decodes its report, both
// as a Report and as a generic map (to check the field names).
func runJSON(t *testing.T, args ...string) (*Report, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(args, "-json"), &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", stderr.String())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	var fields map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &fields))
	return &rep, fields
}

func TestRunAgainstBaseline(t *testing.T) {
	url := startBaseline(t)

	const conns = 50
	rep, fields := runJSON(t, "run", "-url", url, "-conns", strconv.Itoa(conns), "-proto", "mixed",
		"-rate", "20", "-duration", "1s", "-drain", "5s", "-settle", "50ms", "-sources", "4",
		"-pid", strconv.Itoa(os.Getpid()))

	assert.Equal(t, conns, rep.Connected)
	assert.Zero(t, rep.ConnectErrors)
	assert.EqualValues(t, 20, rep.Posts)
	assert.Zero(t, rep.PostErrors)
	assert.Zero(t, rep.Missing)
	assert.Zero(t, rep.Duplicates)
	assert.Zero(t, rep.OutOfOrder)
	assert.Zero(t, rep.Disconnects)
	assert.Zero(t, rep.SubscriptionErrors)
	assert.Equal(t, rep.Posts*conns, rep.DeliveriesExpected)
	assert.Equal(t, rep.Posts*conns, rep.DeliveriesReceived)
	assert.EqualValues(t, rep.DeliveriesReceived, rep.Latency.Count)
	assert.Positive(t, rep.DeliveriesPerSec)
	assert.Positive(t, rep.Latency.P99Ms)
	assert.LessOrEqual(t, rep.Latency.P50Ms, rep.Latency.P99Ms)
	assert.LessOrEqual(t, rep.Latency.P99Ms, rep.Latency.MaxMs)
	assert.Positive(t, rep.Connect.TotalMs)
	assert.Empty(t, rep.Errors)
	assert.Nil(t, rep.Ramp)

	// The figures from /proc (of this process, standing in for the server)
	// and from the baseline's /metrics.
	require.NotNil(t, rep.Server.RSSBeforeKiB)
	require.NotNil(t, rep.Server.RSSPerConnKiB)
	require.NotNil(t, rep.Server.CPUPercent)
	require.NotNil(t, rep.Server.GoroutinesPerConn)
	assert.Positive(t, *rep.Server.RSSBeforeKiB)

	for _, k := range []string{
		"conns", "proto", "connect", "posts", "deliveriesExpected", "deliveriesReceived", "missing",
		"duplicates", "deliveriesPerSec", "latency", "server", "loadgen", "idle", "ramp",
	} {
		assert.Contains(t, fields, k)
	}
	for _, k := range []string{"totalMs", "p50Ms", "p99Ms"} {
		assert.Contains(t, fields["connect"], k)
	}
	for _, k := range []string{"p50Ms", "p90Ms", "p99Ms", "maxMs"} {
		assert.Contains(t, fields["latency"], k)
	}
	for _, k := range []string{"rssBeforeKiB", "rssSubscribedKiB", "rssEndKiB", "rssPerConnKiB", "cpuPercent",
		"goroutinesBefore", "goroutinesSubscribed", "goroutinesPerConn"} {
		assert.Contains(t, fields["server"], k)
	}
}

func TestRampStops(t *testing.T) {
	url := startBaseline(t)
	common := []string{"run", "-url", url, "-conns", "10", "-proto", "transport", "-ramp", "20,40",
		"-step", "300ms", "-drain", "3s", "-settle", "0s", "-sources", "2"}

	t.Run("every step passes", func(t *testing.T) {
		rep, _ := runJSON(t, append(common, "-max-p99", "10s")...)
		require.NotNil(t, rep.Ramp)
		require.Len(t, rep.Ramp.Steps, 2)
		assert.Empty(t, rep.Ramp.StopReason)
		for _, s := range rep.Ramp.Steps {
			assert.True(t, s.OK, s.Reason)
			assert.Equal(t, s.Posts*10, s.Received)
		}
		assert.EqualValues(t, 6+12, rep.Posts)
		assert.Zero(t, rep.Missing)
		best := max(rep.Ramp.Steps[0].DeliveriesPerSec, rep.Ramp.Steps[1].DeliveriesPerSec)
		assert.Equal(t, best, rep.Ramp.HighestSustainedDeliveriesPerSec)
		assert.Positive(t, rep.Ramp.HighestSustainedRate)
	})

	t.Run("stops at the first step over the p99 limit", func(t *testing.T) {
		rep, _ := runJSON(t, append(common, "-max-p99", "1us")...)
		require.NotNil(t, rep.Ramp)
		require.Len(t, rep.Ramp.Steps, 1, "the 40/s step must not run")
		assert.False(t, rep.Ramp.Steps[0].OK)
		assert.Contains(t, rep.Ramp.Steps[0].Reason, "p99")
		assert.Contains(t, rep.Ramp.StopReason, "stopped at 20/s")
		assert.Zero(t, rep.Ramp.HighestSustainedDeliveriesPerSec)
		assert.EqualValues(t, 6, rep.Posts)
		assert.Zero(t, rep.Missing, "posts of steps not run are not missing")
	})
}

func TestVerdict(t *testing.T) {
	const limit = 250 * time.Millisecond
	for _, tc := range []struct {
		name                            string
		posts, postErrors, missing, dup int64
		p99                             time.Duration
		ok                              bool
		reason                          string
	}{
		{name: "passes", posts: 100, p99: limit, ok: true},
		{name: "slow", posts: 100, p99: limit + time.Millisecond, reason: "p99 251ms > 250ms"},
		{name: "missing", posts: 100, missing: 1, p99: time.Millisecond, reason: "1 missing"},
		{name: "duplicated", posts: 100, dup: 2, p99: time.Millisecond, reason: "2 duplicates"},
		{name: "post errors", posts: 99, postErrors: 1, p99: time.Millisecond, reason: "1 post errors"},
		{name: "no posts", reason: "no successful posts"},
		{name: "several", posts: 100, missing: 3, p99: time.Second, reason: "3 missing, p99 1s > 250ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := verdict(tc.posts, tc.postErrors, tc.missing, tc.dup, tc.p99, limit)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.reason, reason)
		})
	}
}

func TestHistogram(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	// The upper edge of the value's 100 µs bucket.
	assert.Equal(t, 500*time.Millisecond+bucketWidth, h.quantile(0.50))
	assert.Equal(t, 990*time.Millisecond+bucketWidth, h.quantile(0.99))
	assert.Equal(t, time.Second, h.quantile(1))
	h.record(time.Minute) // overflow bucket: reported as the exact maximum
	assert.Equal(t, time.Minute, h.quantile(1))
	assert.Zero(t, newHistogram().quantile(0.99))
}

func TestCountMissing(t *testing.T) {
	want, got := newBitset(200), newBitset(200)
	for i := range 200 {
		want.set(i)
		if i%3 != 0 {
			got.set(i)
		}
	}
	count := func(lo, hi int) (n int64) {
		for i := lo; i < hi; i++ {
			if i%3 == 0 {
				n++
			}
		}
		return n
	}
	for _, r := range [][2]int{{0, 200}, {0, 64}, {5, 70}, {64, 128}, {63, 65}, {130, 131}, {10, 10}} {
		assert.Equal(t, count(r[0], r[1]), countMissing(want, got, r[0], r[1]), "range %v", r)
	}
}

func TestParse(t *testing.T) {
	tl := newTally("ab12", []stepPlan{{rate: 1, posts: 10}}, &errorLog{})
	now := time.Now()
	text := statusText("ab12", 7, now, 0)
	msg := []byte(`{"id":"1","type":"next","payload":{"data":{"statusPosted":{"id":"42","text":"` + text + `"}}}}`)
	id, seq, sent, ok := tl.parseFast(msg)
	require.True(t, ok)
	assert.EqualValues(t, 42, id)
	assert.Equal(t, 7, seq)
	assert.Equal(t, now.UnixNano(), sent)

	seq, sent, ok = tl.parseText(text)
	require.True(t, ok)
	assert.Equal(t, 7, seq)
	assert.Equal(t, now.UnixNano(), sent)

	for _, other := range []string{
		`{"type":"next","payload":{"data":{"statusPosted":{"id":"42","text":"lg:zz99:7:1"}}}}`,
		`{"type":"next","payload":{"data":{"statusPosted":{"text":"` + text + `","id":"42"}}}}`,
		`{"type":"ka"}`,
		`{"type":"next","payload":{"data":{"statusPosted":{"id":"42","text":"lg:ab12:7:99999999999999999999"}}}}`,
	} {
		_, _, _, ok := tl.parseFast([]byte(other))
		assert.False(t, ok, other)
	}
	_, _, ok = tl.parseText("hello")
	assert.False(t, ok)

	// A padded text: about the size asked for, parsed the same.
	padded := statusText("ab12", 8, now, 300)
	assert.InDelta(t, 300, len(padded), 20)
	_, seq, sent, ok = tl.parseFast([]byte(`{"statusPosted":{"id":"43","text":"` + padded + `"}}`))
	require.True(t, ok, padded)
	assert.Equal(t, 8, seq)
	assert.Equal(t, now.UnixNano(), sent)
	seq, sent, ok = tl.parseText(padded)
	require.True(t, ok)
	assert.Equal(t, 8, seq)
	assert.Equal(t, now.UnixNano(), sent)
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseRunFlags([]string{"-proto", "nope", "-conns", "0", "-ramp", "10,x"}, &stderr)
	require.Error(t, err)
	for _, want := range []string{"-proto", "-conns", `"x"`} {
		assert.Contains(t, err.Error(), want)
	}
	cfg, err := parseRunFlags([]string{"-ramp", "50, 100", "-step", "2s"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []stepPlan{{rate: 50, posts: 100}, {rate: 100, posts: 200}}, cfg.plan())

	err = run(context.Background(), []string{"frobnicate"}, &stderr, &stderr)
	assert.ErrorContains(t, err, "unknown subcommand")
	err = run(context.Background(), []string{"run", "-h"}, &stderr, &stderr)
	assert.NoError(t, err)
}

func TestTooManyConns(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"run", "-conns", "10000000"}, &stdout, &stderr)
	assert.ErrorContains(t, err, "RLIMIT_NOFILE")
}

// startSwitchboard runs a Switchboard server in-process on a loopback port
// with the limits loadgen's clients would trip switched off, and returns
// its base URL and an admin's token.
func startSwitchboard(t *testing.T) (url, adminToken string) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs after the server's cleanup
	env := map[string]string{
		"ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir(), "DEMO_FEED": "false",
		"LIMIT_REQUESTS": "0", "LIMIT_SIGNINS": "0",
	}
	cfg, err := app.ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	srv, err := app.Start(t.Context(), cfg, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
	})
	token, err := app.MintToken(t.Context(), cfg, "ops", []models.Role{models.RoleAdmin}, time.Hour)
	require.NoError(t, err)
	return srv.URL(), token
}

// runTinyWorkload runs loadgen's workload (notifications or room) with 20
// users at 5 a second for 1 s against url, with the reference, requires
// every user connected, every post made and no error seen, and returns
// the report.
func runTinyWorkload(t *testing.T, workload, url string, args ...string) *NotificationsReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{workload, "-url", url, "-users", "20", "-rate", "5", "-duration", "1s", "-drain", "5s",
		"-settle", "100ms", "-sources", "2", "-pid", strconv.Itoa(os.Getpid()), "-json"}, args...), &stdout, &stderr)
	require.NoError(t, err, "stderr:\n%s", stderr.String())
	var rep NotificationsReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.Equal(t, 20, rep.Connected)
	require.EqualValues(t, 5, rep.Broadcasts)
	require.Empty(t, rep.Errors)
	return &rep
}

// TestNotificationsWorkload runs the notifications workload and its status
// feed reference at a tiny size against a real server: every broadcast
// reaches every user once, on notificationAdded and in the unread count,
// and the report has the figures docs/performance.md quotes.
func TestNotificationsWorkload(t *testing.T) {
	url, token := startSwitchboard(t)
	rep := runTinyWorkload(t, "notifications", url, "-admin-token", token)
	for name, d := range map[string]DeliveryReport{"notificationAdded": rep.NotificationAdded, "unreadCount": rep.UnreadCount} {
		assert.EqualValues(t, 100, d.Expected, name)
		assert.EqualValues(t, 100, d.Received, name)
		assert.Zero(t, d.Missing, name)
		assert.Zero(t, d.Duplicates, name)
		assert.Positive(t, d.Latency.P99Ms, name)
	}
	require.NotNil(t, rep.StatementsPerBroadcast)
	require.NotNil(t, rep.StatementsFirstBroadcast)
	t.Logf("statements per broadcast to 20 users: %v (the first: %v)", *rep.StatementsPerBroadcast, *rep.StatementsFirstBroadcast)
	assert.LessOrEqual(t, *rep.StatementsPerBroadcast, 10.0)
	require.NotNil(t, rep.SlowConsumerDisconnects)
	assert.Zero(t, *rep.SlowConsumerDisconnects)
	assert.Zero(t, rep.DecodedResults, "the server's results are scanned, not decoded, as the reference's are")
	require.NotNil(t, rep.Reference, "the status feed reference")
	assert.Equal(t, 20, rep.Reference.Connected)
	assert.Zero(t, rep.Reference.Missing)
	require.NotNil(t, rep.NotificationAddedP99Ratio)
	require.NotNil(t, rep.UnreadCountP99Ratio)
	require.NotNil(t, rep.Server.CPUPercent)
	require.NotNil(t, rep.Server.RSSEndKiB)
	require.NotNil(t, rep.Server.GoroutinesEnd)

	var table bytes.Buffer
	writeNotifTable(&table, rep)
	for _, want := range []string{"notificationAdded publish→receive", "unreadCount publish→new value", "statusPosted reference", "p99 ratios", "database statements per broadcast"} {
		assert.Contains(t, table.String(), want)
	}
}

// TestRoomWorkload runs the room workload and its reference at a tiny size
// against a real server: every message reaches every member once, on
// messageAdded and in roomsChanged, and every result is scanned.
func TestRoomWorkload(t *testing.T) {
	url, _ := startSwitchboard(t)
	rep := runTinyWorkload(t, "room", url)
	assert.True(t, rep.Lists)
	for name, d := range map[string]DeliveryReport{"messageAdded": rep.NotificationAdded, "roomsChanged": rep.UnreadCount} {
		assert.EqualValues(t, 100, d.Received, name)
		assert.Zero(t, d.Missing, name)
		assert.Zero(t, d.Duplicates, name)
	}
	assert.Zero(t, rep.DecodedResults, "the server's results are scanned, not decoded, as the reference's are")
	require.NotNil(t, rep.Reference, "the status feed reference")
	assert.Zero(t, rep.Reference.Missing)
}

// TestWorkloadsOverSSE: with -proto sse each user's subscriptions are
// event streams, one per subscription, and every broadcast and message
// still reaches every user once on each, through the shared groups (the
// streams of one document join one).
func TestWorkloadsOverSSE(t *testing.T) {
	url, token := startSwitchboard(t)
	for _, args := range [][]string{{"notifications", "-admin-token", token}, {"room"}} {
		t.Run(args[0], func(t *testing.T) {
			rep := runTinyWorkload(t, args[0], url, append(args[1:], "-proto", "sse")...)
			for i, d := range []DeliveryReport{rep.NotificationAdded, rep.UnreadCount} {
				assert.EqualValues(t, 100, d.Received, "subscription %d", i)
				assert.Zero(t, d.Missing, "subscription %d", i)
				assert.Zero(t, d.Duplicates, "subscription %d", i)
			}
			assert.Zero(t, rep.DecodedResults, "the streams' results are scanned, as the WebSockets' are")
			assert.Empty(t, rep.Errors)
			require.NotNil(t, rep.Reference, "the status feed reference")
			assert.Zero(t, rep.Reference.Missing)
		})
	}
}

// TestRoomWorkloadWithoutLists: with -lists=false the members follow the
// room's messages alone (their room lists are not subscribed, so nothing
// is reported of them), and every message still reaches every member once.
func TestRoomWorkloadWithoutLists(t *testing.T) {
	url, _ := startSwitchboard(t)
	rep := runTinyWorkload(t, "room", url, "-lists=false", "-reference=false")
	assert.False(t, rep.Lists)
	assert.EqualValues(t, 100, rep.NotificationAdded.Received)
	assert.Zero(t, rep.NotificationAdded.Missing)
	assert.Zero(t, rep.NotificationAdded.Duplicates)
	assert.Equal(t, DeliveryReport{}, rep.UnreadCount, "no room list was followed")
	assert.Nil(t, rep.UnreadCountP99Ratio)
}

// TestBaselineReplaysAfter: a subscriber with `after` gets the posts after it
// that were made before its subscribe reached the baseline, then live ones,
// each once and in order; without `after` it gets live posts only.
func TestBaselineReplaysAfter(t *testing.T) {
	url := startBaseline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := &api{endpoint: url + "/graphql", client: http.DefaultClient}
	for _, text := range []string{"one", "two"} {
		_, err := a.post(ctx, text)
		require.NoError(t, err)
	}
	subscribe := func(payload map[string]any) *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
		ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(url, "http")+"/graphql", nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = ws.Close() })
		require.NoError(t, ws.WriteJSON(map[string]any{"type": "connection_init"}))
		var ack envelope
		require.NoError(t, ws.ReadJSON(&ack))
		require.Equal(t, "connection_ack", ack.Type)
		require.NoError(t, ws.WriteJSON(map[string]any{"type": "subscribe", "id": "s", "payload": payload}))
		return ws
	}
	// Each reads its messages until the pong that shows its subscribe was
	// handled; the post comes after both.
	resumed := subscribe(subscribePayload(false, "1"))
	plain := subscribe(subscribePayload(true, ""))
	texts := func(ws *websocket.Conn, until func(typ string, texts []string) bool) []string {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []string
		for {
			var m struct {
				Type    string `json:"type"`
				Payload struct {
					Data struct {
						StatusPosted struct{ Text string } `json:"statusPosted"`
					} `json:"data"`
				} `json:"payload"`
			}
			require.NoError(t, ws.ReadJSON(&m))
			if m.Type == "next" {
				got = append(got, m.Payload.Data.StatusPosted.Text)
			}
			if until(m.Type, got) {
				return got
			}
		}
	}
	pong := func(typ string, _ []string) bool { return typ == "pong" }
	var before [2][]string
	for i, ws := range []*websocket.Conn{resumed, plain} {
		require.NoError(t, ws.WriteJSON(map[string]any{"type": "ping"}))
		before[i] = texts(ws, pong)
	}
	_, err := a.post(ctx, "three")
	require.NoError(t, err)
	count := func(n int) func(string, []string) bool {
		return func(_ string, got []string) bool { return len(got) == n }
	}
	assert.Equal(t, []string{"two", "three"}, append(before[0], texts(resumed, count(2-len(before[0])))...))
	assert.Equal(t, []string{"three"}, append(before[1], texts(plain, count(1))...))
}

// TestScanFrame: the messages the server writes for loadgen's documents
// are read without decoding, to the same result as decoding them, and
// without allocating (as the status feed reference's are); anything of
// another shape is left to the decoder.
func TestScanFrame(t *testing.T) {
	now := time.Now()
	title := fmt.Sprintf("lg:ab12:3:%d", now.UnixNano())
	for _, msg := range []string{
		`{"type":"next","id":"n","payload":{"data":{"notificationAdded":{"id":"17","title":"` + title + `"}}}}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":42}}}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":0}}}`,
		`{"type":"next","id":"n","payload":{"data":{"messageAdded":{"id":"1:9","text":"lg:ab12:4:1"}}}}`,
		`{"type":"next","id":"u","payload":{"data":{"roomsChanged":{"id":"1","unreadCount":3,"lastMessage":{"id":"1:9","text":"hi"}}}}}`,
		`{"type":"next","id":"u","payload":{"data":{"roomsChanged":{"id":"2","unreadCount":0,"lastMessage":null}}}}`,
	} {
		scanned, ok := scanFrame([]byte(msg))
		require.True(t, ok, msg)
		decoded, ok := decodeFrame([]byte(msg))
		require.True(t, ok)
		assert.Equal(t, decoded, scanned, msg)
		b := []byte(msg)
		assert.Zero(t, testing.AllocsPerRun(100, func() { scanFrame(b) }), msg)
	}
	for _, msg := range []string{
		`{"type":"next","id":"n","payload":{"errors":[{"message":"no"}],"data":null}}`,
		`{"type":"next","id":"n","payload":{"data":{"notificationAdded":{"id":"17","title":"say \"hi\""}}}}`,
		`{"type":"next","id":"n","payload":{"data":{"notificationAdded":{"title":"t","id":"17"}}}}`,
		`{"type":"next","id":"n","payload":{"data":{"notificationAdded":{"id":"17","title":"t","body":"b"}}}}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":42}},"extra":1}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":-1}}}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":42}}}}`,
		`{"type":"ping"}`,
		`{"type":"next","id":"u","payload":{"data":{"unreadCount":42}`,
	} {
		_, ok := scanFrame([]byte(msg))
		assert.False(t, ok, msg)
	}
	f, ok := decodeFrame([]byte(`{"type":"next","id":"n","payload":{"errors":[{"message":"no"}],"data":null}}`))
	require.True(t, ok)
	assert.True(t, f.errors)

	// The title's broadcast number and send time, this run's only.
	r := &notifRun{titlePrefix: []byte("lg:ab12:"), total: 10}
	seq, sent, ok := r.parseTitle([]byte(title))
	require.True(t, ok)
	assert.Equal(t, 3, seq)
	assert.Equal(t, now.UnixNano(), sent)
	for _, other := range []string{"lg:zz99:3:1", "lg:ab12:10:1", "lg:ab12:3:", "lg:ab12:3:12x", "lg:ab12:3:99999999999999999999", "prime ab12"} {
		_, _, ok := r.parseTitle([]byte(other))
		assert.False(t, ok, other)
	}
}

// TestMedianRounds: a phase's row is its median round by ratio (the lower
// middle one of an even count), a whole measurement, with the range of the
// ratios of all rounds, whatever order the rounds ran in.
func TestMedianRounds(t *testing.T) {
	round := func(plain, post float64) []PhaseReport {
		return []PhaseReport{{Name: "plain", PerSec: plain, RatioToPlain: 1}, {Name: "post", PerSec: post, RatioToPlain: post / plain}}
	}
	got := medianRounds([][]PhaseReport{round(100, 70), round(200, 80), round(100, 50)})
	require.Len(t, got, 2)
	assert.Equal(t, 200.0, got[0].PerSec, "plain: ratios all 1, the middle round")
	assert.Equal(t, [2]float64{1, 1}, got[0].RatioRange)
	assert.Equal(t, 50.0, got[1].PerSec, "post: ratios 0.7, 0.4, 0.5; the median is 0.5's round")
	assert.InDelta(t, 0.5, got[1].RatioToPlain, 1e-9, "post: the median ratio")
	assert.Equal(t, [2]float64{0.4, 0.7}, got[1].RatioRange)

	even := medianRounds([][]PhaseReport{round(100, 90), round(100, 60)})
	assert.Equal(t, 60.0, even[1].PerSec, "of two rounds, the lower")
}

// TestRunOverSSE: -proto sse subscribes with event streams (GraphQL over
// Server-Sent Events) instead of WebSockets, gzipped with -compress, and
// measures them as it measures WebSockets: every post reaches every stream
// once, in order.
func TestRunOverSSE(t *testing.T) {
	url, _ := startSwitchboard(t)
	for _, compress := range []string{"-compress=false", "-compress=true"} {
		rep, _ := runJSON(t, "run", "-url", url, "-conns", "30", "-proto", "sse", compress, "-init-auth=false",
			"-rate", "20", "-duration", "1s", "-drain", "5s", "-settle", "100ms", "-sources", "2",
			"-pid", strconv.Itoa(os.Getpid()))
		assert.Equal(t, "sse", rep.Proto, compress)
		assert.Equal(t, 30, rep.Connected, compress)
		assert.EqualValues(t, 20, rep.Posts, compress)
		assert.Equal(t, rep.Posts*30, rep.DeliveriesReceived, compress)
		assert.Zero(t, rep.Missing, compress)
		assert.Zero(t, rep.Duplicates, compress)
		assert.Zero(t, rep.OutOfOrder, compress)
		assert.Zero(t, rep.Disconnects, compress)
		assert.Empty(t, rep.Errors, compress)
	}
}
