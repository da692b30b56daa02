package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// The dashboard workload: -conns anonymous connections, each subscribed to
// the dashboard and to one module's KPI set (the modules taken in turn from
// -modules, so there are a few distinct selections), while the server's
// demo feed moves every KPI (start it with DEMO_FEED=true and a short
// DEMO_FEED_INTERVAL). Nothing is posted: loadgen watches for -duration and
// counts what arrives, the server's CPU per delivery, the database
// statements per demo step, and how old each value is when it arrives (a
// KPI set from its newest updatedAt, a dashboard from its generatedAt).
// Then, in the same invocation, the status feed is measured with as many
// connections at the same deliveries per connection per second (`loadgen
// run`), and the ratios of the server's CPU per delivery and of the p99s
// are printed.
const (
	dashboardSubscribe = `subscription{ dashboard(topN: 4){ generatedAt modules{ module updatedAt kpis{ key value } } topMovers{ module key value relativeChange } } }`
	kpiSubscribe       = `subscription($m: String!){ kpiUpdated(module: $m){ module kpis{ key label unit value previous updatedAt } } }`
)

// dashConfig is the `dashboard` subcommand's flags.
type dashConfig struct {
	url             string
	conns           int
	modules         []string
	duration        time.Duration
	settle          time.Duration
	pid             int
	sources         int
	dialConcurrency int
	timeout         time.Duration
	reference       bool
	refRate         float64
	json            bool
}

func parseDashFlags(args []string, stderr io.Writer) (*dashConfig, error) {
	c := &dashConfig{}
	fs := flag.NewFlagSet("loadgen dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the server's base URL (its demo feed on, with a short DEMO_FEED_INTERVAL)")
	fs.IntVar(&c.conns, "conns", 1000, "connections, each subscribed to dashboard(topN: 4) and one module's kpiUpdated")
	modules := fs.String("modules", "finance,hr,reports", "comma-separated modules the kpiUpdated subscriptions take in turn")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long to watch")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "pause after every connection has its first values, before watching")
	fs.IntVar(&c.pid, "pid", 0, "the server's PID, to report its RSS and CPU from /proc (0: not reported)")
	fs.IntVar(&c.sources, "sources", 32, "spread connections over the source addresses 127.0.0.1..127.0.0.N (loopback targets only)")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 200, "connections opened at once")
	fs.DurationVar(&c.timeout, "connect-timeout", 30*time.Second, "limit for one connection's dial, init and first values")
	fs.BoolVar(&c.reference, "reference", true, "then measure the status feed with as many connections at the same deliveries per connection per second (loadgen run) and print the ratios")
	fs.Float64Var(&c.refRate, "ref-rate", 0, "the reference's posts per second (0: the deliveries per connection per second measured here)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.modules = strings.Split(*modules, ",")
	var problems []string
	if c.conns < 1 || c.duration <= 0 {
		problems = append(problems, "-conns must be at least 1 and -duration positive")
	}
	if err := checkFlags(fs, c.dialConcurrency, c.sources, problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// DashboardReport is the result of the dashboard workload.
type DashboardReport struct {
	Target        string   `json:"target"`
	Conns         int      `json:"conns"`
	Connected     int      `json:"connected"`
	ConnectErrors int      `json:"connectErrors"`
	Modules       []string `json:"modules"`
	Seconds       float64  `json:"seconds"`

	// Dashboard and KPIUpdated: deliveries in the window, and the age of
	// each value when it arrived.
	Dashboard  LatestReport `json:"dashboard"`
	KPIUpdated LatestReport `json:"kpiUpdated"`
	// DemoSteps is how many new finance values were seen in the window: one
	// per demo feed step.
	DemoSteps int64 `json:"demoSteps"`

	Server                  ServerReport `json:"server"`
	ServerCPUSeconds        *float64     `json:"serverCpuSeconds"`
	CPUPerDeliveryUs        *float64     `json:"cpuPerDeliveryUs"` // server CPU ÷ deliveries of both fields
	StatementsPerDemoStep   *float64     `json:"statementsPerDemoStep"`
	SlowConsumerDisconnects *int64       `json:"slowConsumerDisconnects"`
	Disconnects             int64        `json:"disconnects"`
	Errors                  []string     `json:"errors"`

	// Reference is the status feed measured at the same size and per
	// connection delivery rate.
	Reference                 *Report  `json:"reference,omitempty"`
	ReferenceRate             float64  `json:"referenceRate,omitempty"` // its posts per second
	ReferenceCPUPerDeliveryUs *float64 `json:"referenceCpuPerDeliveryUs,omitempty"`
	CPUPerDeliveryRatio       *float64 `json:"cpuPerDeliveryRatio,omitempty"`
	KPIUpdatedP99Ratio        *float64 `json:"kpiUpdatedP99Ratio,omitempty"`
}

// LatestReport is what the connections received of one latest-value field.
type LatestReport struct {
	Deliveries     int64   `json:"deliveries"`
	PerConnPerSec  float64 `json:"perConnPerSec"`
	DistinctValues int64   `json:"distinctValues"` // the most distinct values any connection saw (of its module)
	Skipped        int64   `json:"skipped"`        // values some connection of the same selection saw and this one did not, summed
	Age            Latency `json:"age"`            // from the value's time to its arrival
}

// runDashboard is the `dashboard` subcommand.
func runDashboard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	w := workload[*dashConfig, *DashboardReport]{parseDashFlags, measureDashboard, addDashReference, writeDashTable}
	return w.run(ctx, args, stdout, stderr, func(c *dashConfig) (bool, bool) { return c.reference, c.json })
}

// addDashReference measures statusPosted with as many connections, posting
// at the deliveries per connection per second measured (or -ref-rate), and
// the ratios.
func addDashReference(ctx context.Context, cfg *dashConfig, rep *DashboardReport, progress io.Writer) error {
	rate := cfg.refRate
	if rate <= 0 {
		rate = max(0.1, round2(rep.Dashboard.PerConnPerSec+rep.KPIUpdated.PerConnPerSec))
	}
	rc, err := parseRunFlags([]string{
		"-url", cfg.url, "-conns", strconv.Itoa(cfg.conns), "-rate", fmt.Sprint(rate),
		"-duration", cfg.duration.String(), "-settle", cfg.settle.String(),
		"-pid", strconv.Itoa(cfg.pid), "-sources", strconv.Itoa(cfg.sources),
		"-dial-concurrency", strconv.Itoa(cfg.dialConcurrency), "-connect-timeout", cfg.timeout.String(),
	}, progress)
	if err != nil {
		return err
	}
	rep.ReferenceRate = rate
	fmt.Fprintf(progress, "status feed reference at %g posts/s:\n", rate)
	if rep.Reference, err = measure(ctx, rc, progress); err != nil {
		return err
	}
	if s := rep.Reference.Server.CPUSeconds; s != nil && rep.Reference.DeliveriesReceived > 0 {
		v := round2(*s * 1e6 / float64(rep.Reference.DeliveriesReceived))
		rep.ReferenceCPUPerDeliveryUs = &v
		if rep.CPUPerDeliveryUs != nil {
			r := round2(*rep.CPUPerDeliveryUs / v)
			rep.CPUPerDeliveryRatio = &r
		}
	}
	if ref := rep.Reference.Latency.P99Ms; ref > 0 {
		r := round2(rep.KPIUpdated.Age.P99Ms / ref)
		rep.KPIUpdatedP99Ratio = &r
	}
	return nil
}

// dashConn is one connection and what it received; its fields are owned by
// its read loop until the loop is done.
type dashConn struct {
	ws       *websocket.Conn
	module   string
	counting atomic.Bool // in the measured window
	boards   map[int64]struct{}
	sets     map[int64]struct{}
	ages     [2]*histogram // dashboard, kpiUpdated
	first    chan struct{} // closed when both first values are in
	seen     [2]bool       // a first dashboard, KPI set has come
	lost     bool
	done     chan struct{}
}

// dashRun is one dashboard measurement's shared state.
type dashRun struct {
	cfg      *dashConfig
	ep       endpoints
	errs     *errorLog
	conns    []*dashConn
	progress io.Writer
}

func measureDashboard(ctx context.Context, cfg *dashConfig, progress io.Writer) (*DashboardReport, error) {
	ep, err := endpointsOf(cfg.url)
	if err != nil {
		return nil, err
	}
	if limit, err := raiseNoFile(); err != nil {
		return nil, err
	} else if need := uint64(cfg.conns + 128); need > limit {
		return nil, fmt.Errorf("-conns %d needs about %d open files, but RLIMIT_NOFILE is %d", cfg.conns, need, limit)
	}
	r := &dashRun{cfg: cfg, ep: ep, errs: &errorLog{}, progress: progress}
	pr := &probe{pid: cfg.pid, metricsURL: ep.metrics, client: &http.Client{Timeout: 10 * time.Second}}
	rep := &DashboardReport{Target: cfg.url, Conns: cfg.conns, Modules: cfg.modules}
	rep.Server.PID = cfg.pid
	rep.Server.RSSBeforeKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesBefore = opt(pr.goroutines(ctx))
	fmt.Fprintf(progress, "loadgen dashboard %s: %d connections\n", cfg.url, cfg.conns)
	defer r.closeAll()
	if err := r.connectAll(ctx); err != nil {
		return nil, err
	}
	rep.Connected, rep.ConnectErrors = len(r.conns), cfg.conns-len(r.conns)
	if err := sleepCtx(ctx, cfg.settle); err != nil {
		return nil, err
	}
	rep.Server.RSSSubscribedKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesSubscribed = opt(pr.goroutines(ctx))
	slow0, okSlow := pr.metric(ctx, "switchboard_slow_consumer_disconnects_total")
	stmt0, okStmt := pr.metric(ctx, "switchboard_database_statements_total")
	fmt.Fprintf(progress, "watching for %v\n", cfg.duration)
	window := startCPU(pr)
	for _, c := range r.conns {
		c.counting.Store(true)
	}
	if err := sleepCtx(ctx, cfg.duration); err != nil {
		return nil, err
	}
	for _, c := range r.conns {
		c.counting.Store(false)
	}
	window.stop()
	stmt1, okStmt1 := pr.metric(ctx, "switchboard_database_statements_total")
	rep.Seconds = round2(window.seconds)
	rep.Server.CPUPercent = window.serverPercent
	rep.ServerCPUSeconds = window.serverSeconds()
	rep.Server.RSSEndKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesEnd = opt(pr.goroutines(ctx))
	if slow1, ok := pr.metric(ctx, "switchboard_slow_consumer_disconnects_total"); ok && okSlow {
		v := int64(slow1 - slow0)
		rep.SlowConsumerDisconnects = &v
	}
	r.fill(rep)
	if okStmt && okStmt1 && rep.DemoSteps > 0 {
		v := round2((stmt1 - stmt0) / float64(rep.DemoSteps))
		rep.StatementsPerDemoStep = &v
	}
	rep.Errors = r.errs.list()
	return rep, ctx.Err()
}

// connectAll opens -conns connections, -dial-concurrency at a time; one
// that fails is left out (and counted as a connect error).
func (r *dashRun) connectAll(ctx context.Context) error {
	ds := dialers(r.ep.host, r.cfg.sources, r.cfg.timeout, false)
	t0 := time.Now()
	conns, err := connectEach(ctx, r.cfg.conns, r.cfg.dialConcurrency, r.errs, func(ctx context.Context, i int) (*dashConn, error) {
		return r.connect(ctx, ds[i%len(ds)], r.cfg.modules[i%len(r.cfg.modules)])
	})
	r.conns = conns
	fmt.Fprintf(r.progress, "connected %d/%d in %v\n", len(r.conns), r.cfg.conns, time.Since(t0).Round(time.Millisecond))
	return err
}

// connect opens one connection (graphql-transport-ws), subscribes to the
// dashboard and to module's KPIs, and waits for both first values.
func (r *dashRun) connect(ctx context.Context, d *websocket.Dialer, module string) (*dashConn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.timeout)
	defer cancel()
	dd := *d
	dd.Subprotocols = []string{transportWS.subprotocol()}
	ws, _, err := dd.DialContext(ctx, r.ep.ws, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &dashConn{ws: ws, module: module, boards: map[int64]struct{}{}, sets: map[int64]struct{}{},
		ages: [2]*histogram{newHistogram(), newHistogram()}, first: make(chan struct{}), done: make(chan struct{})}
	for _, m := range []any{
		map[string]any{"type": "connection_init"},
		map[string]any{"type": "subscribe", "id": "d", "payload": map[string]any{"query": dashboardSubscribe}},
		map[string]any{"type": "subscribe", "id": "k", "payload": map[string]any{"query": kpiSubscribe, "variables": map[string]any{"m": module}}},
	} {
		if err := ws.WriteJSON(m); err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("write: %w", err)
		}
	}
	go r.readLoop(c)
	select {
	case <-c.first:
		return c, nil
	case <-c.done:
		return nil, errors.New("connection lost before the first values")
	case <-ctx.Done():
		_ = ws.Close()
		<-c.done
		return nil, fmt.Errorf("wait for the first values: %w", ctx.Err())
	}
}

// readLoop reads c's messages until the connection fails or is closed.
func (r *dashRun) readLoop(c *dashConn) {
	defer close(c.done)
	c.lost = readMessages(c.ws, r.errs, func(msg []byte, now time.Time) { r.handle(c, msg, now) })
}

// handle records one message received at now. It reads only what it needs
// of the frame (the id, and the newest time in it), not the whole JSON.
func (r *dashRun) handle(c *dashConn, msg []byte, now time.Time) {
	switch {
	case bytes.Contains(msg, []byte(`"type":"ping"`)):
		_ = c.ws.WriteMessage(websocket.TextMessage, pongMessage)
		return
	case bytes.Contains(msg, []byte(`"errors"`)) || bytes.Contains(msg, []byte(`"type":"error"`)):
		r.errs.add(fmt.Sprintf("subscription: %.200s", msg))
		return
	case !bytes.Contains(msg, []byte(`"type":"next"`)):
		return
	}
	field, key := 1, []byte(`"updatedAt":"`)
	if bytes.Contains(msg, []byte(`"id":"d"`)) {
		field, key = 0, []byte(`"generatedAt":"`)
	}
	at := newestTime(msg, key)
	if !c.seen[0] || !c.seen[1] {
		if c.seen[field] = true; c.seen[0] && c.seen[1] {
			close(c.first)
		}
	}
	if !c.counting.Load() || at.IsZero() {
		return
	}
	c.ages[field].record(now.Sub(at))
	if field == 0 {
		c.boards[at.UnixNano()] = struct{}{}
	} else {
		c.sets[at.UnixNano()] = struct{}{}
	}
}

// newestTime returns the latest RFC 3339 time that follows key in msg.
func newestTime(msg, key []byte) time.Time {
	var newest time.Time
	for {
		i := bytes.Index(msg, key)
		if i < 0 {
			return newest
		}
		msg = msg[i+len(key):]
		end := bytes.IndexByte(msg, '"')
		if end < 0 {
			return newest
		}
		if t, err := time.Parse(time.RFC3339Nano, string(msg[:end])); err == nil && t.After(newest) {
			newest = t
		}
	}
}

// closeAll closes every connection and waits for the read loops.
func (r *dashRun) closeAll() {
	closeAll(r.conns, func(c *dashConn) (*websocket.Conn, <-chan struct{}) { return c.ws, c.done })
	r.conns = nil
}

// fill closes the connections and computes the report's deliveries.
func (r *dashRun) fill(rep *DashboardReport) {
	conns := r.conns
	r.closeAll()
	ages := [2]*histogram{newHistogram(), newHistogram()}
	boards := map[int64]struct{}{}
	sets := map[string]map[int64]struct{}{}
	for _, c := range conns {
		ages[0].merge(c.ages[0])
		ages[1].merge(c.ages[1])
		rep.Dashboard.Deliveries += int64(len(c.boards))
		rep.KPIUpdated.Deliveries += int64(len(c.sets))
		for t := range c.boards {
			boards[t] = struct{}{}
		}
		if sets[c.module] == nil {
			sets[c.module] = map[int64]struct{}{}
		}
		for t := range c.sets {
			sets[c.module][t] = struct{}{}
		}
		if c.lost {
			rep.Disconnects++
		}
	}
	for _, c := range conns {
		rep.Dashboard.Skipped += int64(len(boards) - len(c.boards))
		rep.KPIUpdated.Skipped += int64(len(sets[c.module]) - len(c.sets))
	}
	rep.Dashboard.DistinctValues = int64(len(boards))
	for _, s := range sets {
		rep.KPIUpdated.DistinctValues = max(rep.KPIUpdated.DistinctValues, int64(len(s)))
	}
	rep.DemoSteps = rep.KPIUpdated.DistinctValues
	for i, lr := range []*LatestReport{&rep.Dashboard, &rep.KPIUpdated} {
		lr.Age = ages[i].summary()
		if n := len(conns); n > 0 && rep.Seconds > 0 {
			lr.PerConnPerSec = round2(float64(lr.Deliveries) / float64(n) / rep.Seconds)
		}
	}
	if rep.ServerCPUSeconds != nil {
		if n := rep.Dashboard.Deliveries + rep.KPIUpdated.Deliveries; n > 0 {
			v := round2(*rep.ServerCPUSeconds * 1e6 / float64(n))
			rep.CPUPerDeliveryUs = &v
		}
	}
}

// writeDashTable prints the report as a table, with the reference beside.
func writeDashTable(out io.Writer, r *DashboardReport) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "dashboard workload\t%s, %d connections (%d connected, %d errors), kpiUpdated of %s, %.1f s\n",
		r.Target, r.Conns, r.Connected, r.ConnectErrors, strings.Join(r.Modules, ", "), r.Seconds)
	d := func(name string, x LatestReport) {
		fmt.Fprintf(w, "%s\t%d deliveries (%.2f per connection per second), %d distinct values, %d skipped; age p50 %s, p99 %s, max %s\n", name,
			x.Deliveries, x.PerConnPerSec, x.DistinctValues, x.Skipped, msStr(x.Age.P50Ms), msStr(x.Age.P99Ms), msStr(x.Age.MaxMs))
	}
	d("dashboard(topN: 4)", r.Dashboard)
	d("kpiUpdated", r.KPIUpdated)
	fmt.Fprintf(w, "server CPU / per delivery\t%s / %s µs\n", pct(r.Server.CPUPercent), num(r.CPUPerDeliveryUs))
	if ref := r.Reference; ref != nil {
		fmt.Fprintf(w, "statusPosted reference (same connections, %g posts/s)\tp50 %s, p99 %s; %d/%d connected, %d missing, server CPU %s, %s µs per delivery\n",
			r.ReferenceRate, msStr(ref.Latency.P50Ms), msStr(ref.Latency.P99Ms), ref.Connected, ref.Conns, ref.Missing, pct(ref.Server.CPUPercent), num(r.ReferenceCPUPerDeliveryUs))
		fmt.Fprintf(w, "ratios to the status feed\tCPU per delivery %s, kpiUpdated p99 age / statusPosted p99 %s\n", num(r.CPUPerDeliveryRatio), num(r.KPIUpdatedP99Ratio))
	}
	fmt.Fprintf(w, "database statements per demo step\t%s (%d steps seen)\n", num(r.StatementsPerDemoStep), r.DemoSteps)
	fmt.Fprintf(w, "server RSS before / subscribed / after\t%s / %s / %s\n", kib(r.Server.RSSBeforeKiB), kib(r.Server.RSSSubscribedKiB), kib(r.Server.RSSEndKiB))
	fmt.Fprintf(w, "server goroutines before / subscribed / after\t%s / %s / %s\n", intStr(r.Server.GoroutinesBefore), intStr(r.Server.GoroutinesSubscribed), intStr(r.Server.GoroutinesEnd))
	fmt.Fprintf(w, "slow-consumer disconnects / connections lost\t%s / %d\n", intStr(r.SlowConsumerDisconnects), r.Disconnects)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error\t%s\n", e)
	}
	_ = w.Flush()
}
