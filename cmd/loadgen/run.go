package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// config is the `run` subcommand's flags.
type config struct {
	url             string
	conns           int
	proto           string
	rate            float64
	duration        time.Duration
	drain           time.Duration
	settle          time.Duration
	idle            time.Duration
	pid             int
	sources         int
	dialConcurrency int
	timeout         time.Duration
	ramp            []float64
	step            time.Duration
	maxP99          time.Duration
	json            bool
	token           string
	initAuth        bool
	inflight        int
	compare         bool
	compress        bool
	textSize        int
	posters         int
	plain           bool
	rssAfter        int
}

func parseRunFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the server's base URL (the API is at /graphql, metrics at /metrics)")
	fs.IntVar(&c.conns, "conns", 1000, "subscribed WebSocket connections")
	fs.StringVar(&c.proto, "proto", "transport", "subprotocol: transport (graphql-transport-ws), legacy (graphql-ws) or mixed (half each); or sse: event streams (GraphQL over Server-Sent Events) instead of WebSockets")
	fs.Float64Var(&c.rate, "rate", 10, "posts per second")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to post at -rate (0: no posts)")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait after the last post of a step for the deliveries still missing")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause after all connections are subscribed, before measuring the server and posting")
	fs.DurationVar(&c.idle, "idle", 0, "after subscribing, measure the server's CPU and RSS over this long without posts")
	fs.IntVar(&c.pid, "pid", 0, "the server's PID, to report its RSS and CPU from /proc (0: not reported)")
	fs.IntVar(&c.sources, "sources", 32, "spread connections over the source addresses 127.0.0.1..127.0.0.N (loopback targets only)")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 200, "connections being opened at once")
	fs.DurationVar(&c.timeout, "connect-timeout", 30*time.Second, "limit for one connection's dial + init + subscribe")
	ramp := fs.String("ramp", "", "comma-separated post rates: run a step of -step at each instead of -rate/-duration, stopping at the first step that fails")
	fs.DurationVar(&c.step, "step", 10*time.Second, "length of a ramp step")
	fs.DurationVar(&c.maxP99, "max-p99", 250*time.Millisecond, "a ramp step fails when its p99 publish→receive latency exceeds this")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&c.token, "token", "", "bearer token for posting (default: signIn as a guest)")
	fs.BoolVar(&c.initAuth, "init-auth", true, "send the token in every connection_init, as signed-in clients do")
	fs.IntVar(&c.inflight, "publishers", 64, "posts in flight at most")
	fs.BoolVar(&c.compress, "compress", false, "offer permessage-deflate on every connection, as browsers do")
	fs.IntVar(&c.textSize, "text-size", 0, "pad each status text with words to about this many bytes (at most 480), for a realistic payload size")
	fs.IntVar(&c.posters, "posters", 0, "guests posting in turn (default: one per 2 posts/s of the highest rate, within the server's default LIMIT_STATUSES); ignored with -token")
	fs.BoolVar(&c.plain, "plain", false, "subscribe without after (subscription { statusPosted { id text createdAt } }), as most clients do")
	fs.IntVar(&c.rssAfter, "rss-after", 10, "read the server's RSS once every subscriber has received this many posts (0: not read)")
	fs.BoolVar(&c.compare, "compare", false, "then measure a baseline server (loadgen baseline, started as a child process on 127.0.0.1) the same way and report both")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var problems []string
	if *ramp != "" {
		for f := range strings.SplitSeq(*ramp, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || r <= 0 || math.IsInf(r, 0) {
				problems = append(problems, fmt.Sprintf("-ramp: %q is not a positive rate", f))
				continue
			}
			c.ramp = append(c.ramp, r)
		}
		if c.step <= 0 {
			problems = append(problems, "-step must be positive")
		}
	}
	if c.conns < 1 {
		problems = append(problems, "-conns must be at least 1")
	}
	if c.proto != "transport" && c.proto != "legacy" && c.proto != "mixed" && c.proto != "sse" {
		problems = append(problems, "-proto must be transport, legacy, mixed or sse")
	}
	if c.rate <= 0 && c.duration > 0 && len(c.ramp) == 0 {
		problems = append(problems, "-rate must be positive")
	}
	if c.duration < 0 || c.drain < 0 || c.settle < 0 || c.idle < 0 {
		problems = append(problems, "durations must not be negative")
	}
	if c.rssAfter < 0 {
		problems = append(problems, "-rss-after must not be negative")
	}
	if c.sources < 1 || c.sources > 254 {
		problems = append(problems, "-sources must be 1..254")
	}
	if c.dialConcurrency < 1 || c.inflight < 1 {
		problems = append(problems, "-dial-concurrency and -publishers must be at least 1")
	}
	if c.timeout <= 0 {
		problems = append(problems, "-connect-timeout must be positive")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

// stepPlan is one stretch of posting at a fixed rate.
type stepPlan struct {
	rate  float64
	posts int
}

// plan is the posting schedule: one step per ramp rate, or one step of
// -rate for -duration.
func (c *config) plan() []stepPlan {
	var p []stepPlan
	if len(c.ramp) > 0 {
		for _, r := range c.ramp {
			p = append(p, stepPlan{rate: r, posts: max(1, int(math.Round(r*c.step.Seconds())))})
		}
		return p
	}
	if n := int(math.Round(c.rate * c.duration.Seconds())); n > 0 {
		p = append(p, stepPlan{rate: c.rate, posts: n})
	}
	return p
}

// endpoints are the server's URLs derived from -url.
type endpoints struct {
	graphql, ws, metrics string
	host                 string
}

func endpointsOf(raw string) (endpoints, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoints{}, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return endpoints{}, fmt.Errorf("-url: want http://host:port, got %q", raw)
	}
	base := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/graphql")
	g, m := *u, *u
	g.Path, m.Path = base+"/graphql", base+"/metrics"
	g.RawQuery, m.RawQuery = "", ""
	w := g
	w.Scheme = "ws"
	if u.Scheme == "https" {
		w.Scheme = "wss"
	}
	return endpoints{graphql: g.String(), ws: w.String(), metrics: m.String(), host: u.Hostname()}, nil
}

// netDialers returns one dialer per source address: connections to a
// loopback IPv4 server are spread over 127.0.0.1..127.0.0.N, each source
// address having its own ephemeral ports; other targets get one dialer.
func netDialers(host string, sources int, timeout time.Duration) []*net.Dialer {
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		sources = 1
		ip = nil
	}
	var ds []*net.Dialer
	for i := range sources {
		nd := &net.Dialer{Timeout: timeout}
		if ip != nil {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}
		}
		ds = append(ds, nd)
	}
	return ds
}

// dialers returns one WebSocket dialer per source address (netDialers).
func dialers(host string, sources int, timeout time.Duration, compress bool) []*websocket.Dialer {
	pool := &sync.Pool{}
	var ds []*websocket.Dialer
	for _, nd := range netDialers(host, sources, timeout) {
		ds = append(ds, &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: timeout,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
			WriteBufferPool:  pool,
			// Compression (when offered) is negotiated per connection;
			// gorilla decompresses what arrives compressed.
			EnableCompression: compress,
		})
	}
	return ds
}

// maxRate is the highest post rate of a plan.
func maxRate(plan []stepPlan) float64 {
	var r float64
	for _, s := range plan {
		r = max(r, s.rate)
	}
	return r
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxPlanBytes bounds the receive bitmaps (one bit per planned post per
// connection).
const maxPlanBytes = 2 << 30

// measure runs one measurement against the server at cfg.url and returns
// its report: it connects and subscribes cfg.conns clients, measures the
// server idle if asked, posts step by step, then counts every delivery.
// Progress lines go to progress.
func measure(ctx context.Context, cfg *config, progress io.Writer) (*Report, error) {
	plan, ep, err := preflight(cfg)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.inflight + 8,
		MaxIdleConnsPerHost: cfg.inflight + 8,
		IdleConnTimeout:     90 * time.Second,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	a, posters, err := signInPosters(ctx, client, ep, cfg, plan)
	if err != nil {
		return nil, err
	}
	after, err := a.newest(ctx)
	if err != nil {
		return nil, err
	}
	pr := &probe{pid: cfg.pid, metricsURL: ep.metrics, client: client}
	if err := checkServerProcess(pr, cfg, progress); err != nil {
		return nil, err
	}
	errs := &errorLog{}
	runID := newRunID()
	m := &measurement{cfg: cfg, progress: progress, plan: plan, pr: pr, errs: errs, t: newTally(runID, plan, errs)}
	m.rep = &Report{
		Target: cfg.url, Proto: cfg.proto, Conns: cfg.conns, RunID: runID, After: after,
		Server: ServerReport{PID: cfg.pid},
	}
	m.rep.Server.RSSBeforeKiB = opt(pr.rssKiB())
	m.rep.Server.GoroutinesBefore = opt(pr.goroutines(ctx))
	m.goroutines = sampleGoroutines(ctx, pr, 200*time.Millisecond)
	defer m.goroutines.finish()
	if cfg.plain {
		m.rep.After = "" // not sent
	}

	fmt.Fprintf(progress, "loadgen %s: %d %s connections to %s (run %s, after %s)\n", cfg.url, cfg.conns, cfg.proto, ep.ws, runID, after)
	subToken := ""
	if cfg.initAuth {
		subToken = a.token
	}
	conn := newConnector(ep.ws, dialers(ep.host, cfg.sources, cfg.timeout, cfg.compress), cfg.proto, subToken, subscribePayload(cfg.plain, after), cfg.timeout, m.t)
	if cfg.proto == "sse" {
		conn.sseURL = sseStreamURL(ep.graphql, subscribePayload(cfg.plain, after))
		conn.sse = sseClients(ep.host, cfg.sources, cfg.timeout, cfg.compress)
	}
	err = m.connect(ctx, conn)
	closed := false
	defer func() {
		if !closed {
			_ = m.fl.closeAll(m.t, 10*time.Second)
		}
	}()
	if err != nil {
		return nil, err
	}
	if err := m.settleAndIdle(ctx); err != nil {
		return nil, err
	}
	pub := &publisher{apis: posters, pad: cfg.textSize, runID: runID, inflight: cfg.inflight, errs: errs, posted: make([]bool, m.t.total()), latency: newHistogram()}
	steps, stopReason, err := m.post(ctx, pub)
	if err != nil {
		return nil, err
	}
	// Close, then count exactly from the receive bitmaps.
	closed = true
	if err := m.fl.closeAll(m.t, 10*time.Second); err != nil {
		errs.add(err.Error())
	}
	m.count(steps, pub)
	if len(cfg.ramp) > 0 {
		m.rep.Ramp = rampReport(steps, stopReason, cfg.maxP99)
	}
	m.rep.Errors = errs.list()
	return m.rep, nil
}

// preflight checks that the machine can hold the run (open files, receive
// bitmaps) and returns the posting plan and the server's endpoints.
func preflight(cfg *config) ([]stepPlan, endpoints, error) {
	limit, err := raiseNoFile()
	if err != nil {
		return nil, endpoints{}, err
	}
	if need := uint64(cfg.conns + cfg.inflight + 64); need > limit {
		return nil, endpoints{}, fmt.Errorf("-conns %d needs about %d open files, but RLIMIT_NOFILE is %d (the hard limit); raise it (ulimit -Hn / prlimit) or use fewer -conns", cfg.conns, need, limit)
	}
	plan := cfg.plan()
	var total int
	for _, s := range plan {
		total += s.posts
	}
	if need := int64(total+63) / 8 * int64(cfg.conns); need > maxPlanBytes {
		return nil, endpoints{}, fmt.Errorf("%d posts × %d connections needs %d MiB of receive bitmaps; post less", total, cfg.conns, need>>20)
	}
	ep, err := endpointsOf(cfg.url)
	return plan, ep, err
}

// signInPosters returns the API client the run reads with and those that
// post: the -token's, or several guests posting in turn, so that the rate
// stays within each one's statuses-per-second limit.
func signInPosters(ctx context.Context, client *http.Client, ep endpoints, cfg *config, plan []stepPlan) (*api, []*api, error) {
	a := &api{client: client, endpoint: ep.graphql, token: cfg.token}
	if a.token != "" {
		return a, []*api{a}, nil
	}
	n := cfg.posters
	if n <= 0 {
		n = int(math.Ceil(maxRate(plan) / 2))
	}
	var posters []*api
	for i := range max(n, 1) {
		p := &api{client: client, endpoint: ep.graphql}
		var err error
		if p.token, err = p.signIn(ctx, fmt.Sprintf("loadgen-%d", i+1)); err != nil {
			return nil, nil, err
		}
		posters = append(posters, p)
	}
	a.token = posters[0].token
	return a, posters, nil
}

// checkServerProcess refuses a -pid that names no process, and warns when
// it looks like a wrapper rather than the server, or when the server may
// not open enough files.
func checkServerProcess(pr *probe, cfg *config, progress io.Writer) error {
	if cfg.pid > 0 {
		name, ok := pr.command()
		switch {
		case !ok:
			return fmt.Errorf("-pid %d: no such process", cfg.pid)
		case slices.Contains([]string{"bash", "sh", "dash", "zsh", "go", "timeout", "env", "sudo"}, name):
			fmt.Fprintf(progress, "warning: -pid %d is %s, probably not the server itself (its figures would be the wrapper's)\n", cfg.pid, name)
		}
	}
	if n, ok := pr.maxOpenFiles(); ok && n < int64(cfg.conns)+16 {
		fmt.Fprintf(progress, "warning: the server (pid %d) may open only %d files, fewer than -conns %d needs\n", cfg.pid, n, cfg.conns)
	}
	return nil
}

// measurement is one run's state between its phases.
type measurement struct {
	cfg      *config
	progress io.Writer
	plan     []stepPlan
	pr       *probe
	errs     *errorLog
	t        *tally
	fl       *fleet
	rep      *Report

	goroutines *goroutineSampler // from before connecting to the end of posting
}

// connect opens, initialises and subscribes every connection (m.fl, which
// the caller closes, also after an error), and reports how long that took.
func (m *measurement) connect(ctx context.Context, conn *connector) error {
	perConn := newHistogram()
	connectCPU := startCPU(m.pr)
	t0 := time.Now()
	m.fl = connectAll(ctx, conn, m.cfg.conns, m.cfg.dialConcurrency, perConn, m.progress)
	connectTime := time.Since(t0)
	connectCPU.stop()
	m.rep.Connected, m.rep.ConnectErrors = len(m.fl.subs), m.fl.errors
	pc := perConn.summary()
	m.rep.Connect = ConnectReport{TotalMs: ms(connectTime), P50Ms: pc.P50Ms, P99Ms: pc.P99Ms, MaxMs: pc.MaxMs, ServerCPUPercent: connectCPU.serverPercent}
	fmt.Fprintf(m.progress, "connected %d/%d in %v (p50 %.1f ms, p99 %.1f ms per connection)\n", m.rep.Connected, m.cfg.conns, connectTime.Round(time.Millisecond), pc.P50Ms, pc.P99Ms)
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(m.fl.subs) == 0 {
		return fmt.Errorf("no connection subscribed: %s", strings.Join(m.errs.list(), "; "))
	}
	return nil
}

// settleAndIdle waits -settle, reads the server's memory and goroutines
// with every client subscribed, then, with -idle, measures it at rest.
func (m *measurement) settleAndIdle(ctx context.Context) error {
	if err := sleepCtx(ctx, m.cfg.settle); err != nil {
		return err
	}
	m.rep.Server.RSSSubscribedKiB = opt(m.pr.rssKiB())
	m.rep.Server.GoroutinesSubscribed = opt(m.pr.goroutines(ctx))
	if m.cfg.idle <= 0 {
		return nil
	}
	fmt.Fprintf(m.progress, "idle for %v\n", m.cfg.idle)
	idle := &IdleReport{Seconds: m.cfg.idle.Seconds()}
	idle.RSSStartKiB = opt(m.pr.rssKiB())
	w := startCPU(m.pr)
	if err := sleepCtx(ctx, m.cfg.idle); err != nil {
		return err
	}
	w.stop()
	idle.RSSEndKiB = opt(m.pr.rssKiB())
	idle.ServerCPUPercent, idle.LoadgenCPUPercent = w.serverPercent, w.selfPercent
	idle.Goroutines = opt(m.pr.goroutines(ctx))
	m.rep.Idle = idle
	return nil
}

// post runs the plan's steps, each followed by its drain; a ramp stops at
// its first failing step, and says why.
func (m *measurement) post(ctx context.Context, pub *publisher) (steps []StepReport, stopReason string, _ error) {
	window := startCPU(m.pr)
	subscribers := int64(len(m.fl.subs))
	rssAfter := func() (int64, bool) { return 0, false }
	if n := int64(min(m.cfg.rssAfter, m.t.total())); n > 0 {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel() // a reading still waiting when posting ends is given up
		rssAfter = rssAfterEvents(rctx, m.pr, m.t.receivedAll, n, subscribers)
		defer func() { cancel(); m.rep.Server.RSSAfterEventsKiB = opt(rssAfter()) }()
	}
	for k, sp := range m.plan {
		st := m.t.steps[k]
		w := startCPU(m.pr)
		var posts stepPosts
		fmt.Fprintf(m.progress, "posting %d at %g/s\n", sp.posts, sp.rate)
		pub.runStep(ctx, m.t.stepStart[k], sp.posts, sp.rate, &posts)
		expected := posts.ok.Load() * subscribers
		waitDrain(ctx, st, expected, m.cfg.drain)
		w.stop()
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		sr := stepReport(sp, &posts, st, expected, w)
		sr.OK, sr.Reason = verdict(sr.Posts, sr.PostErrors, sr.Missing, sr.Duplicates, st.latency.quantile(0.99), m.cfg.maxP99)
		steps = append(steps, sr)
		fmt.Fprintf(m.progress, "  %d/%d delivered (%d missing, %d duplicates), %.0f deliveries/s, p50 %.1f ms p99 %.1f ms max %.1f ms\n",
			sr.Received, sr.Expected, sr.Missing, sr.Duplicates, sr.DeliveriesPerSec, sr.Latency.P50Ms, sr.Latency.P99Ms, sr.Latency.MaxMs)
		if len(m.cfg.ramp) > 0 && !sr.OK {
			stopReason = fmt.Sprintf("stopped at %g/s: %s", sp.rate, sr.Reason)
			fmt.Fprintln(m.progress, "  "+stopReason)
			break
		}
	}
	window.stop()
	m.rep.Server.RSSEndKiB = opt(m.pr.rssKiB())
	m.rep.Server.GoroutinesEnd = opt(m.pr.goroutines(ctx))
	m.rep.Server.GoroutinesMax = opt(m.goroutines.finish())
	if len(steps) > 0 {
		m.rep.Server.CPUPercent = window.serverPercent
		m.rep.Server.CPUSeconds = window.serverSeconds()
		m.rep.Loadgen.CPUPercent = window.selfPercent
	}
	m.rep.Loadgen.RSSKiB = opt((&probe{pid: os.Getpid()}).rssKiB())
	return steps, stopReason, nil
}

// count fills the report's totals from the steps and, exactly, from every
// connection's receive bitmap, once the connections are closed.
func (m *measurement) count(steps []StepReport, pub *publisher) {
	rep, t := m.rep, m.t
	posted := newBitset(t.total())
	for seq, ok := range pub.posted {
		if ok {
			posted.set(seq)
		}
	}
	merged := newHistogram()
	var first, last time.Time
	for k, sr := range steps {
		rep.Posts += sr.Posts
		rep.PostErrors += sr.PostErrors
		rep.PostsLate += sr.PostsLate
		rep.DeliveriesReceived += t.steps[k].received.Load()
		merged.merge(t.steps[k].latency)
		if k == 0 {
			first = sr.start
		}
		last = sr.end
	}
	for _, s := range m.fl.subs {
		rep.Missing += countMissing(posted, s.got, 0, t.total())
		rep.Duplicates += s.duplicates
		rep.OutOfOrder += s.outOfOrder
		rep.Foreign += s.foreign
		rep.Unexpected += s.unexpected
	}
	rep.DeliveriesExpected = rep.Posts * int64(len(m.fl.subs))
	rep.Disconnects = t.disconnects.Load()
	rep.SubscriptionErrors = t.subErrors.Load()
	rep.Latency = merged.summary()
	rep.PostLatency = pub.latency.summary()
	if !first.IsZero() {
		rep.WindowSeconds = round2(last.Sub(first).Seconds())
		if rep.WindowSeconds > 0 {
			rep.DeliveriesPerSec = round2(float64(rep.DeliveriesReceived) / last.Sub(first).Seconds())
		}
	}
	s := &rep.Server
	if s.RSSBeforeKiB != nil && s.RSSSubscribedKiB != nil {
		v := round2(float64(*s.RSSSubscribedKiB-*s.RSSBeforeKiB) / float64(rep.Connected))
		s.RSSPerConnKiB = &v
	}
	if s.GoroutinesBefore != nil && s.GoroutinesSubscribed != nil {
		v := round2(float64(*s.GoroutinesSubscribed-*s.GoroutinesBefore) / float64(rep.Connected))
		s.GoroutinesPerConn = &v
	}
	perConn := func(v, before *int64) *float64 {
		if v == nil || before == nil || rep.Connected == 0 {
			return nil
		}
		r := round2(float64(*v-*before) / float64(rep.Connected))
		return &r
	}
	s.RSSPerConnAfterEventsKiB = perConn(s.RSSAfterEventsKiB, s.RSSBeforeKiB)
	s.GoroutinesMaxPerConn = perConn(s.GoroutinesMax, s.GoroutinesBefore)
}

// rampReport summarises a ramp: its steps and the highest rate it
// sustained.
func rampReport(steps []StepReport, stopReason string, maxP99 time.Duration) *RampReport {
	r := &RampReport{Steps: steps, StopReason: stopReason, MaxP99Ms: ms(maxP99)}
	for _, sr := range steps {
		if sr.OK && sr.DeliveriesPerSec > r.HighestSustainedDeliveriesPerSec {
			r.HighestSustainedDeliveriesPerSec = sr.DeliveriesPerSec
			r.HighestSustainedRate = sr.Rate
		}
	}
	return r
}

// waitDrain waits until a step's expected deliveries have arrived or drain
// has passed since its last post, then a little longer (at most 100 ms,
// within drain) for duplicates.
func waitDrain(ctx context.Context, st *stepTally, expected int64, drain time.Duration) {
	deadline := time.Now().Add(drain)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for st.received.Load() < expected && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
	_ = sleepCtx(ctx, min(100*time.Millisecond, time.Until(deadline)))
}

// stepReport summarises one step as it stood after its drain.
func stepReport(sp stepPlan, posts *stepPosts, st *stepTally, expected int64, w *cpuWindow) StepReport {
	r := StepReport{
		Rate:             sp.rate,
		Posts:            posts.ok.Load(),
		PostErrors:       posts.failed.Load(),
		PostsLate:        posts.late.Load(),
		Expected:         expected,
		Received:         st.received.Load(),
		Duplicates:       st.duplicates.Load(),
		Latency:          st.latency.summary(),
		ServerCPUPercent: w.serverPercent,
		LoadgenCPU:       w.selfPercent,
		start:            posts.start,
	}
	r.Missing = max(0, r.Expected-r.Received)
	r.end = posts.end
	if l := st.lastRecv.Load(); l > r.end.UnixNano() {
		r.end = time.Unix(0, l)
	}
	if d := r.end.Sub(r.start).Seconds(); d > 0 {
		r.DeliveriesPerSec = round2(float64(r.Received) / d)
	}
	if n := r.Posts + r.PostErrors; n > 0 {
		span := posts.lastLaunch.Sub(posts.start) + time.Duration(float64(time.Second)/sp.rate)
		r.PostRate = round2(float64(n) / span.Seconds())
	}
	return r
}

func opt[T any](v T, ok bool) *T {
	if !ok {
		return nil
	}
	return &v
}
