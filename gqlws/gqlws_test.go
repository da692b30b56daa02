package gqlws_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/graph"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/resolvers"
	"github.com/switchboardhq/switchboard/statuses"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
	"github.com/switchboardhq/switchboard/stream"
)

// harness is the GraphQL endpoint with the real schema, store (SQLite) and
// status service behind a gqlws.Transport configured by the test.
type harness struct {
	srv      *httptest.Server
	ws       *gqlws.Transport
	statuses *statuses.Service
	author   *models.User
}

// newHarness starts the endpoint with opts (sharing statusPosted between
// all callers unless opts says how to share), closed when t ends.
func newHarness(t testing.TB, opts gqlws.Options) *harness {
	t.Helper()
	return newHarnessBehind(t, opts, nil)
}

// newHarnessBehind is newHarness with the endpoint behind middleware wrap
// (nil for none).
func newHarnessBehind(t testing.TB, opts gqlws.Options, wrap func(http.Handler) http.Handler) *harness {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	broker := mempubsub.New(0)
	t.Cleanup(func() { _ = broker.Close() })
	feed := statuses.New(db, broker, statuses.Options{Stream: stream.Options{PollInterval: 50 * time.Millisecond}})
	res := &resolvers.Resolver{Statuses: feed}
	if opts.Positions == nil {
		opts.Positions = stream.WithPositionRecorder
		opts.PublicFields = []string{"statusPosted"}
	}
	ws := gqlws.New(opts)
	gql := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: res}))
	gql.AddTransport(ws)
	gql.AddTransport(transport.POST{})
	var endpoint http.Handler = gql
	if wrap != nil {
		endpoint = wrap(gql)
	}
	srv := httptest.NewServer(endpoint)
	t.Cleanup(func() {
		ws.Shutdown()
		srv.Close()
		feed.Close()
	})
	author, err := db.CreateUser(context.Background(), "author")
	require.NoError(t, err)
	return &harness{srv: srv, ws: ws, statuses: feed, author: author}
}

// post posts a status, as postStatus does.
func (h *harness) post(t *testing.T, text string) *models.Status {
	t.Helper()
	st, err := h.statuses.Post(context.Background(), h.author, text, "")
	require.NoError(t, err)
	return st
}

// dial connects, initialises and subscribes to statusPosted after after.
func (h *harness) dial(t *testing.T, d *websocket.Dialer, after string) *websocket.Conn {
	t.Helper()
	c, _, err := d.Dial("ws"+strings.TrimPrefix(h.srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
	require.NoError(t, c.WriteJSON(map[string]any{"type": "subscribe", "id": "s", "payload": map[string]any{
		"query":     `subscription($a: ID) { statusPosted(after: $a) { id text } }`,
		"variables": map[string]any{"a": after},
	}}))
	return c
}

type frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// nextPayload reads frames until the next event and returns its payload,
// or an error when the connection ends.
func nextPayload(c *websocket.Conn, timeout time.Duration) (json.RawMessage, error) {
	for {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		var f frame
		if err := c.ReadJSON(&f); err != nil {
			return nil, err
		}
		if f.Type == "next" {
			return f.Payload, nil
		}
	}
}

// nextID reads frames until the next event and returns its status id, or
// an error when the connection ends.
func nextID(c *websocket.Conn, timeout time.Duration) (int64, error) {
	payload, err := nextPayload(c, timeout)
	if err != nil {
		return 0, err
	}
	var p struct {
		Data struct{ StatusPosted struct{ ID string } } `json:"data"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return 0, err
	}
	return strconv.ParseInt(p.Data.StatusPosted.ID, 10, 64)
}

// tinyReceiveBuffer dials with a 2 KiB socket receive buffer, so that the
// server's writes to a client that does not read are cut short soon.
func tinyReceiveBuffer() *websocket.Dialer {
	return &websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}, NetDial: func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
			if err != nil {
				return err
			}
			return serr
		}}
		return d.Dial(network, addr)
	}}
}

// TestSlowConsumerIsDisconnected: a subscriber that stops reading is cut off
// within a bounded time and memory, the others keep receiving everything,
// and the slow one, resuming with after, loses nothing.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	h := newHarness(t, gqlws.Options{MaxQueue: 256, WriteTimeout: 300 * time.Millisecond, SendBuffer: 4096})
	fast := h.dial(t, &websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}}, "0")
	// The slow client's socket takes almost nothing, so the server's writes
	// to it block as soon as the kernel buffers are full.
	tiny := tinyReceiveBuffer()
	slow := h.dial(t, tiny, "0")

	const total = 600
	text := strings.Repeat("x", 480)
	done := make(chan []int64)
	go func() {
		var got []int64
		for len(got) < total {
			id, err := nextID(fast, 10*time.Second)
			if err != nil {
				break
			}
			got = append(got, id)
		}
		done <- got
	}()
	start := time.Now()
	for range total {
		h.post(t, text)
	}
	got := <-done
	t.Logf("%d posts and their delivery to the fast subscriber took %s", total, time.Since(start))
	require.Len(t, got, total, "the fast subscriber received everything")
	for i, id := range got {
		require.Equal(t, int64(i+1), id)
	}

	// The slow one reads now: what was buffered, then the end of the connection.
	var last int64
	var err error
	for {
		var id int64
		if id, err = nextID(slow, 5*time.Second); err != nil {
			break
		}
		require.Equal(t, last+1, id, "in order, no gap")
		last = id
	}
	require.Less(t, last, int64(total), "the slow subscriber was cut off")
	// The close frame says 1013 when the server could still write it; a
	// client whose buffers stayed full sees the connection drop (1006).
	// The standard client reconnects after either.
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "the connection was closed: %v", err)
	assert.Contains(t, []int{gqlws.CloseTryAgainLater, websocket.CloseAbnormalClosure}, ce.Code)

	// Resuming with after, it loses nothing.
	again := h.dial(t, &websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}}, strconv.FormatInt(last, 10))
	for want := last + 1; want <= total; want++ {
		id, err := nextID(again, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, want, id)
	}
}

// TestPausedReaderCatchesUp: a client that stops reading for a moment
// fills its socket, so the server's writes to it are cut short and finished
// later by the connection's flusher. When it reads again, within the write
// timeout, it gets every frame intact and in order, and stays connected.
// (The write timeout is a minute so that the pause, which lasts as long as
// the posting, stays within it on a slow machine under -race.)
func TestPausedReaderCatchesUp(t *testing.T) {
	h := newHarness(t, gqlws.Options{MaxQueue: 1024, WriteTimeout: time.Minute, SendBuffer: 4096})
	tiny := tinyReceiveBuffer()
	c := h.dial(t, tiny, "0")
	first := h.post(t, "first")
	id, err := nextID(c, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, first.ID, id, "subscribed")

	// About 300 KB while the client does not read: far more than the
	// socket buffers on both sides hold.
	const total = 600
	text := strings.Repeat("y", 480)
	for range total {
		h.post(t, text)
	}
	for want := first.ID + 1; want <= first.ID+total; want++ {
		id, err := nextID(c, 5*time.Second)
		require.NoError(t, err, "frame for status %d", want)
		require.Equal(t, want, id, "in order, no gap")
	}
	last := h.post(t, "still connected")
	id, err = nextID(c, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, last.ID, id)
}

// dialInit connects with subprotocol proto and completes connection_init.
func (h *harness) dialInit(t *testing.T, proto string) *websocket.Conn {
	t.Helper()
	c := h.dialProto(t, proto)
	require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
	var ack frame
	require.NoError(t, c.ReadJSON(&ack))
	require.Equal(t, "connection_ack", ack.Type)
	return c
}

// TestKeepalive: the server pings graphql-transport-ws clients and sends ka
// to legacy ones every interval; a client that answers stays connected, one
// that falls silent for 1.4 intervals is disconnected with 1001 (the
// standard client reconnects), so a vanished client is noticed in bounded
// time.
func TestKeepalive(t *testing.T) {
	const interval = 100 * time.Millisecond
	h := newHarness(t, gqlws.Options{KeepAlive: interval})

	t.Run("answering client stays", func(t *testing.T) {
		c := h.dialInit(t, gqlws.TransportWS)
		pings := 0
		for end := time.Now().Add(8 * interval); time.Now().Before(end); {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var f frame
			require.NoError(t, c.ReadJSON(&f), "still connected after %d pings", pings)
			if f.Type == "ping" {
				pings++
				require.NoError(t, c.WriteJSON(map[string]any{"type": "pong"}))
			}
		}
		assert.GreaterOrEqual(t, pings, 4, "a ping every interval")
	})

	t.Run("silent client is dropped", func(t *testing.T) {
		c := h.dialInit(t, gqlws.TransportWS)
		start := time.Now()
		var err error
		for err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var f frame
			err = c.ReadJSON(&f) // pings arrive and are never answered
		}
		var ce *websocket.CloseError
		require.True(t, errors.As(err, &ce), "closed with a close frame: %v", err)
		assert.Equal(t, gqlws.CloseGoingAway, ce.Code)
		assert.Equal(t, "Keepalive timeout", ce.Text)
		assert.Less(t, time.Since(start), 3*interval, "noticed within 1.4 intervals (and a watchdog tick)")
	})

	t.Run("legacy ka", func(t *testing.T) {
		c := h.dialInit(t, gqlws.LegacyWS)
		kas := 0
		for kas < 3 {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var f frame
			require.NoError(t, c.ReadJSON(&f))
			require.Equal(t, "ka", f.Type)
			kas++
		}
		// The legacy protocol has no pong: a quiet legacy client is kept.
		_ = c.SetReadDeadline(time.Now().Add(5 * interval))
		var f frame
		require.NoError(t, c.ReadJSON(&f))
	})
}

// TestReleaseWhenTheConnectionEnds: what Init reserved for a connection is
// given back once, when the connection ends, however it ends: the client
// closes, or the server does.
func TestReleaseWhenTheConnectionEnds(t *testing.T) {
	released := make(chan string, 10)
	h := newHarness(t, gqlws.Options{
		Init: func(_ context.Context, payload map[string]any) (gqlws.InitResult, error) {
			name, _ := payload["name"].(string)
			return gqlws.InitResult{Release: func() { released <- name }}, nil
		},
		MaxOperations: 1,
	})
	wait := func() string {
		select {
		case name := <-released:
			return name
		case <-time.After(5 * time.Second):
			t.Fatal("not released within 5 s")
			return ""
		}
	}
	for _, proto := range []string{gqlws.TransportWS, gqlws.LegacyWS} {
		c := h.dialProto(t, proto)
		require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"name": proto}}))
		var ack frame
		require.NoError(t, c.ReadJSON(&ack))
		require.Equal(t, "connection_ack", ack.Type)
		require.NoError(t, c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")))
		assert.Equal(t, proto, wait(), "released when the client closed")

		// The server closes: a second init is a protocol error on
		// graphql-transport-ws; on the legacy protocol, terminate.
		c = h.dialProto(t, proto)
		require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"name": proto + " again"}}))
		require.NoError(t, c.ReadJSON(&ack))
		if proto == gqlws.TransportWS {
			require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
		} else {
			require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_terminate"}))
		}
		assert.Equal(t, proto+" again", wait(), "released when the server closed")
	}
	select {
	case name := <-released:
		t.Fatalf("%s released twice", name)
	case <-time.After(100 * time.Millisecond):
	}
}
