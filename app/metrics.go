package app

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/resolvers"
)

// metrics are one server's Prometheus metrics, served at /metrics: the Go
// and process collectors, the counters below, fed as things happen, and the
// switchboard_* values read from the parts that keep them (the WebSocket
// transport, the rate limits, the database) at each scrape. The README's
// metrics table gives each switchboard_* metric's help text word for word;
// TestREADMEMetricsTable keeps the two in step.
type metrics struct {
	reg *prometheus.Registry
	// own are the switchboard_* collectors, in the order registered.
	own []prometheus.Collector
	// deliveryLatency is the time from an event's creation (the mutation
	// that committed it) to its frames being handed to every subscriber's
	// socket, per shared event.
	deliveryLatency prometheus.Histogram
	// errorsByCode counts the errors answered to clients, by
	// extensions.code (INTERNAL and UNAVAILABLE are the ones to alert on).
	errorsByCode *prometheus.CounterVec
	// brokerErrors counts failed broker operations (Redis unreachable).
	brokerErrors *prometheus.CounterVec
	// brokerSkipped counts the broker operations skipped without trying
	// while the circuit breaker is open.
	brokerSkipped *prometheus.CounterVec
	// eventsPublished counts the events announced on the broker, by topic
	// kind.
	eventsPublished *prometheus.CounterVec
	// operations times queries and mutations.
	operations *prometheus.HistogramVec
	// panics counts the panics recovered, by where they happened.
	panics *prometheus.CounterVec
}

// newMetrics returns a server's metrics with the Go and process collectors
// and the counters registered; observe adds what the transport and the
// services keep, once they exist.
func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_latency_seconds",
			Help:    "From an event's commit to its frames being handed to every subscriber of a shared subscription.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		errorsByCode: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_errors_total",
			Help: "GraphQL errors answered to clients, by extensions.code (alert on INTERNAL and UNAVAILABLE); an operation whose client went away mid-way is not counted.",
		}, []string{"code"}),
		brokerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_broker_errors_total",
			Help: "Broker publishes, subscribes, shared rate-limit checks and shared persisted-query lookups that failed, by op; live delivery falls back to the database meanwhile, rate limits and persisted queries to this replica's own.",
		}, []string{"op"}),
		brokerSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_broker_skipped_total",
			Help: "Broker publishes, shared rate-limit checks and shared persisted-query lookups skipped at once, by op, while the broker's circuit breaker is open after a failure or a timeout; subscribers get the events from the database, rate limits and persisted queries are kept locally.",
		}, []string{"op"}),
		eventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_events_published_total",
			Help: "Events announced to subscribers through the broker, by topic (room:N counts as room).",
		}, []string{"topic"}),
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_operation_duration_seconds",
			Help:    "Time to answer queries and mutations, from parsed request to response.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"type"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_panics_total",
			Help: "Panics recovered, by where they happened (resolver, ws.*, a service's follower or loop); each ended only its own operation, connection or iteration, and was logged with its stack (alert on any).",
		}, []string{"where"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.register(m.deliveryLatency, m.errorsByCode, m.brokerErrors, m.brokerSkipped, m.eventsPublished, m.operations, m.panics)
	return m
}

// countPanic counts a panic recovered at where (see panics.Guard).
func (m *metrics) countPanic(where string) { m.panics.WithLabelValues(where).Inc() }

// observeReadiness registers switchboard_ready, asking ready at each
// scrape (what /readyz answers: the database within 1 s, not shutting
// down), so that an alert sees a replica out of rotation.
func (m *metrics) observeReadiness(ready func() bool) {
	m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_ready",
		Help: "1 while the server is ready (what /readyz answers 200 to: the database answers within 1 s, no shutdown begun; a broker outage only degrades it), 0 otherwise; read at each scrape.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}

// handler serves the metrics in Prometheus's format.
func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// register registers switchboard_* collectors.
func (m *metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.own = append(m.own, cs...)
}

// countErrors counts the errors present presents, by code, but for those
// of callers that went away.
func (m *metrics) countErrors(present graphql.ErrorPresenterFunc) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		e := present(ctx, err)
		if resolvers.CallerGone(ctx, err) {
			return e // answered to nobody
		}
		code, _ := e.Extensions["code"].(string)
		m.errorsByCode.WithLabelValues(cmp.Or(code, "UNKNOWN")).Inc()
		return e
	}
}

// countingBroker counts a broker's events, its failed publishes and
// subscribes, and the publishes its circuit breaker skipped. Ping and Close
// pass through uncounted: readiness probes call Ping at the prober's pace,
// so its failures would count the probes rather than the outage, which
// /readyz reports as "degraded" anyway.
type countingBroker struct {
	pubsub.Broker
	m *metrics
}

// Publish publishes and counts the event, the skip, or the failure.
func (b countingBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	err := b.Broker.Publish(ctx, topic, payload)
	switch {
	case errors.Is(err, pubsub.ErrBrokerDown):
		b.m.brokerSkipped.WithLabelValues("publish").Inc()
	case err != nil:
		b.m.brokerErrors.WithLabelValues("publish").Inc()
	default:
		b.m.eventsPublished.WithLabelValues(topicKind(topic)).Inc()
	}
	return err
}

// topicKind is a topic without its id: room:12 is room.
func topicKind(topic string) string {
	kind, _, _ := strings.Cut(topic, ":")
	return kind
}

// Subscribe subscribes and counts a failure (but not a cancellation).
func (b countingBroker) Subscribe(ctx context.Context, topic string) (*pubsub.Subscription, error) {
	sub, err := b.Broker.Subscribe(ctx, topic)
	if err != nil && ctx.Err() == nil {
		b.m.brokerErrors.WithLabelValues("subscribe").Inc()
	}
	return sub, err
}

// observe registers the metrics that ws, sse and svc keep, read at each scrape.
func (m *metrics) observe(ws *gqlws.Transport, sse *graphQLOverSSE, svc *services) {
	m.register(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_sse_streams",
			Help: "Open subscriptions over Server-Sent Events (graphql-sse).",
		}, func() float64 { return float64(sse.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_websocket_connections",
			Help: "Open WebSocket connections.",
		}, func() float64 { return float64(ws.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_websocket_compressed_connections",
			Help: "Open WebSocket connections that negotiated permessage-deflate (WS_COMPRESSION).",
		}, func() float64 { return float64(ws.Compressed()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_shared_subscriptions",
			Help: "Groups of subscriptions whose live results are executed and encoded once per event (once per event and set of users for the fields shared by all users).",
		}, func() float64 { return float64(ws.Groups() + sse.groups.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_events_delivered_total",
			Help: "Operation results handed to WebSocket clients: one per subscriber for each event (protocol messages such as acks, pings and errors are not counted).",
		}, func() float64 { return float64(ws.Stats().FramesWritten) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_slow_consumer_disconnects_total",
			Help: "WebSocket clients disconnected (1013) because they did not read fast enough; they reconnect and resume with after.",
		}, func() float64 { return float64(ws.Stats().SlowConsumers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_database_statements_total",
			Help: "SQL statements run (queries and writes).",
		}, func() float64 { return float64(svc.db.Statements()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_database_connections",
			Help: "Open database connections, in use or idle: at most the pools' sizes (48 on MySQL: 32, and 16 for append batches; 32 on PostgreSQL; 8 on SQLite), however long the database hangs.",
		}, func() float64 { return float64(svc.db.OpenConnections()) }),
		&transportCollector{ws: ws, svc: svc},
	)
}

var (
	closesDesc = prometheus.NewDesc("switchboard_websocket_closes_total",
		"WebSocket connections closed, by the server's close code (1013: slow consumer or too many connections of one user, 4403: token expired, 1001: shutdown or keepalive timeout), or code=\"client\" when the client closed.",
		[]string{"code"}, nil)
	refusedDesc = prometheus.NewDesc("switchboard_rate_limited_total",
		"Operations, sign-ins, messages, typing events, rooms and connections refused by a rate limit, by limit.",
		[]string{"limit"}, nil)
	subscriptionsDesc = prometheus.NewDesc("switchboard_subscriptions",
		"Subscriptions running, by root field.",
		[]string{"field"}, nil)
	dbErrorsDesc = prometheus.NewDesc("switchboard_database_errors_total",
		"Failed database statements, by kind: connection (unreachable, or no answer within DB_TIMEOUT), conflict (unique key or deadlock, retried or answered), other.",
		[]string{"kind"}, nil)
)

// cacheBytesDesc describes cacheCollector's metric.
var cacheBytesDesc = prometheus.NewDesc("switchboard_query_cache_bytes",
	"Bytes held by the GraphQL document caches, by cache: parsed (parsed and validated documents) or persisted (automatic persisted queries).",
	[]string{"cache"}, nil)

// cacheCollector reports the bytes each query cache holds, by name.
type cacheCollector map[string]interface{ Bytes() int }

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- cacheBytesDesc }

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for name, cache := range c {
		ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(cache.Bytes()), name)
	}
}

// transportCollector reports labelled counters kept by the WebSocket layer,
// the services' rate limits and the database.
type transportCollector struct {
	ws  *gqlws.Transport
	svc *services
}

func (c *transportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- closesDesc
	ch <- refusedDesc
	ch <- subscriptionsDesc
	ch <- dbErrorsDesc
}

func (c *transportCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.ws.Stats()
	for code, n := range st.Closes {
		ch <- prometheus.MustNewConstMetric(closesDesc, prometheus.CounterValue, float64(n), code)
	}
	refused := st.Refused
	refused["messages"] += c.svc.messageRate.Refused()
	refused["typing"] += c.svc.typingRate.Refused()
	refused["statuses"] += c.svc.statusRate.Refused()
	refused["requests"] += c.svc.requestRate.Refused()
	refused["signins"] += c.svc.signInRate.Refused()
	refused["connections_per_user"] += c.svc.userConns.Refused()
	refused["rooms"] += c.svc.roomRate.Refused()
	for limit, n := range refused {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(n), limit)
	}
	for field, n := range st.Subscriptions {
		ch <- prometheus.MustNewConstMetric(subscriptionsDesc, prometheus.GaugeValue, float64(n), field)
	}
	for kind, n := range c.svc.db.ErrorCounts() {
		ch <- prometheus.MustNewConstMetric(dbErrorsDesc, prometheus.CounterValue, float64(n), kind)
	}
}

// operationTimer is a gqlgen extension that times queries and mutations.
type operationTimer struct{ hist *prometheus.HistogramVec }

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
} = (*operationTimer)(nil)

func (*operationTimer) ExtensionName() string                   { return "OperationTimer" }
func (*operationTimer) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse times each query and mutation (subscriptions, which
// answer once per event, are not timed).
func (o *operationTimer) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	rc := graphql.GetOperationContext(ctx)
	if rc.Operation == nil || rc.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	start := time.Now()
	resp := next(ctx)
	o.hist.WithLabelValues(string(rc.Operation.Operation)).Observe(time.Since(start).Seconds())
	return resp
}
