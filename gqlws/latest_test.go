package gqlws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/graph"
	"github.com/switchboardhq/switchboard/kpi"
	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/resolvers"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// kpiHarness is the GraphQL endpoint with the real schema and KPI service
// (SQLite), kpiUpdated and dashboard shared as the server shares them, and
// a count of the subscription results executed.
type kpiHarness struct {
	url     string
	kpis    *kpi.Service
	results atomic.Int64 // subscription results executed (and so encoded)
}

func newKPIHarness(t *testing.T, opts gqlws.Options) *kpiHarness {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	broker := mempubsub.New(0)
	svc := kpi.New(db, broker, kpi.Options{DashboardInterval: 100 * time.Millisecond})
	ctx, stop := context.WithCancel(context.Background())
	svc.Start(ctx)
	opts.PublicFields = []string{"kpiUpdated", "dashboard"}
	opts.LatestFields = opts.PublicFields
	opts.Versions = live.WithVersionRecorder
	ws := gqlws.New(opts)
	h := &kpiHarness{kpis: svc}
	gql := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{KPIs: svc, KPIPublic: true}}))
	gql.AddTransport(ws)
	gql.Use(resultCounter{&h.results})
	srv := httptest.NewServer(gql)
	h.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	t.Cleanup(func() {
		ws.Shutdown()
		srv.Close()
		stop()
		svc.Close()
		_ = broker.Close()
	})
	return h
}

// resultCounter counts the results of subscriptions, each of which the
// transport encodes once.
type resultCounter struct{ n *atomic.Int64 }

func (resultCounter) ExtensionName() string                   { return "resultCounter" }
func (resultCounter) Validate(graphql.ExecutableSchema) error { return nil }
func (c resultCounter) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp != nil && graphql.GetOperationContext(ctx).Operation.Operation == ast.Subscription {
		c.n.Add(1)
	}
	return resp
}

// record records the value of finance/counter (and, with labels, 20 more
// KPIs with long labels, to make each result large).
func (h *kpiHarness) record(t *testing.T, v float64, labels bool) {
	t.Helper()
	in := []*models.KPIInput{{Module: "finance", Key: "counter", Value: v}}
	if labels {
		for i := range 20 {
			in = append(in, &models.KPIInput{Module: "finance", Key: fmt.Sprintf("k%02d", i), Value: 1, Label: ptr(strings.Repeat("l", 100))})
		}
	}
	_, err := h.kpis.Record(context.Background(), nil, in, "")
	require.NoError(t, err)
}

func ptr[T any](v T) *T { return &v }

// subscribe connects with d and subscribes to query.
func (h *kpiHarness) subscribe(t *testing.T, d *websocket.Dialer, query string) *websocket.Conn {
	t.Helper()
	c, _, err := d.Dial(h.url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init"}))
	require.NoError(t, c.WriteJSON(map[string]any{"type": "subscribe", "id": "k", "payload": map[string]any{"query": query}}))
	return c
}

// nextCounter reads frames until the next KPI set and returns the value of
// finance/counter in it.
func nextCounter(c *websocket.Conn, timeout time.Duration) (float64, error) {
	payload, err := nextPayload(c, timeout)
	if err != nil {
		return 0, err
	}
	var p struct {
		Data struct {
			KpiUpdated struct{ KPIs []struct{ Key, Value any } } `json:"kpiUpdated"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return 0, err
	}
	for _, k := range p.Data.KpiUpdated.KPIs {
		if v, ok := k.Value.(float64); ok && k.Key == "counter" {
			return v, nil
		}
	}
	return 0, fmt.Errorf("no counter in %s", payload)
}

// TestLatestValueDeliveryIsShared: the subscribers of one selection of a
// latest-value stream share one execution and encoding of each new value,
// whatever their number; another selection (another document, other
// variables) gets its own.
func TestLatestValueDeliveryIsShared(t *testing.T) {
	h := newKPIHarness(t, gqlws.Options{})
	h.record(t, 0, false)
	d := &websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}}
	selections := []string{
		`subscription { kpiUpdated(module: "finance") { kpis { key value } } }`,
		`subscription { kpiUpdated(module: "finance") { module kpis { key value } } }`,
	}
	const perSelection = 12
	var conns []*websocket.Conn
	for _, q := range selections {
		for range perSelection {
			conns = append(conns, h.subscribe(t, d, q))
		}
	}
	// change records v and returns how many results it cost, once every
	// subscriber has it.
	change := func(v float64) int64 {
		before := h.results.Load()
		h.record(t, v, false)
		for _, c := range conns {
			got, err := nextCounter(c, 10*time.Second)
			for err == nil && got < v { // its first value, if it came after an earlier change
				got, err = nextCounter(c, 10*time.Second)
			}
			require.NoError(t, err)
			require.Equal(t, v, got)
		}
		return h.results.Load() - before
	}
	// The subscribers join their groups once their own first results are
	// out; a change that comes meanwhile may still run privately for some.
	v := 1.0
	for ; v <= 5 && change(v) != int64(len(selections)); v++ {
	}
	for range 3 {
		v++
		assert.Equal(t, int64(len(selections)), change(v), "results executed for one change to %d subscribers of %d selections", len(conns), len(selections))
	}
}

// TestSlowLatestValueReaderEndsWithTheNewest: a subscriber of a
// latest-value stream that stops reading while many values go by is not
// disconnected for its backlog (its queue holds one result, replaced by
// each newer one): when it reads again it gets fewer values, in order, the
// last being the newest, and stays subscribed.
func TestSlowLatestValueReaderEndsWithTheNewest(t *testing.T) {
	h := newKPIHarness(t, gqlws.Options{MaxQueue: 8, WriteTimeout: time.Minute, SendBuffer: 4096})
	h.record(t, 0, true)
	const query = `subscription { kpiUpdated(module: "finance") { kpis { key value label } } }`
	fast := h.subscribe(t, &websocket.Dialer{Subprotocols: []string{gqlws.TransportWS}}, query)
	slow := h.subscribe(t, tinyReceiveBuffer(), query)
	for _, c := range []*websocket.Conn{fast, slow} {
		v, err := nextCounter(c, 10*time.Second)
		require.NoError(t, err)
		require.Zero(t, v)
	}

	// About 3 KB per value, 60 values, while the slow one does not read.
	const total = 60
	for i := 1; i <= total; i++ {
		h.record(t, float64(i), true)
	}
	for {
		v, err := nextCounter(fast, 10*time.Second)
		require.NoError(t, err)
		if v == total {
			break
		}
	}

	var got []float64
	for len(got) == 0 || got[len(got)-1] < total {
		v, err := nextCounter(slow, 10*time.Second)
		require.NoError(t, err, "the slow reader is still connected after %v", got)
		require.True(t, len(got) == 0 || v > got[len(got)-1], "in order: %v after %v", v, got)
		got = append(got, v)
	}
	t.Logf("the slow reader got %d of %d values", len(got), total)
	assert.Less(t, len(got), total, "intermediate values skipped")
	h.record(t, total+1, true)
	v, err := nextCounter(slow, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, float64(total+1), v, "still subscribed")
}
