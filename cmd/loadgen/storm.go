package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The reconnect storm: a server restart sends every client back at once,
// each resuming with after. `storm` starts the server itself (-server) so
// that it can restart it: N subscribers follow the feed; the server stops
// (they are closed with 1001) and starts again on the same database;
// -backlog statuses are posted while the subscribers are away; then they
// all reconnect at once, each with the last id it saw. It reports how long
// until every one is caught up (has the newest status), what any of them
// missed or got twice across the restart, and the database statements the
// storm cost (switchboard_database_statements_total, from reconnecting to
// all caught up), against N.

// stormConfig is the `storm` subcommand's flags.
type stormConfig struct {
	server          string
	dataDir         string
	conns           int
	backlog         int
	sources         int
	dialConcurrency int
	timeout         time.Duration
	limit           time.Duration
	json            bool
}

func parseStormFlags(args []string, stderr io.Writer) (*stormConfig, error) {
	c := &stormConfig{}
	fs := flag.NewFlagSet("loadgen storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.server, "server", "", "the switchboard binary to start (and restart) on a free loopback port (required)")
	fs.StringVar(&c.dataDir, "data-dir", "", "its DATA_DIR (default: a fresh temporary directory)")
	fs.IntVar(&c.conns, "conns", 1000, "subscribers")
	fs.IntVar(&c.backlog, "backlog", 20, "statuses posted while the subscribers are away, which each must replay")
	fs.IntVar(&c.sources, "sources", 32, "spread connections over the source addresses 127.0.0.1..127.0.0.N")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 200, "connections being opened at once")
	fs.DurationVar(&c.timeout, "connect-timeout", 30*time.Second, "limit for one connection's dial + init + subscribe")
	fs.DurationVar(&c.limit, "catch-up-limit", 60*time.Second, "give up waiting for every subscriber to catch up after this long")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.server == "":
		return nil, errors.New("-server is required: storm restarts the server itself")
	case c.conns < 1 || c.backlog < 0 || c.sources < 1 || c.sources > 254 || c.dialConcurrency < 1:
		return nil, errors.New("-conns and -dial-concurrency must be at least 1, -backlog not negative, -sources 1..254")
	}
	return c, nil
}

// StormReport is the result of `loadgen storm`.
type StormReport struct {
	Conns              int      `json:"conns"`
	Resumed            int      `json:"resumed"` // reconnected and subscribed after the restart
	Backlog            int      `json:"backlog"`
	RestartMs          float64  `json:"restartMs"`          // stop, start, ready
	CaughtUpMs         float64  `json:"caughtUpMs"`         // reconnecting → every subscriber has the newest status
	CaughtUpP50Ms      float64  `json:"caughtUpP50Ms"`      // per subscriber
	CaughtUpP99Ms      float64  `json:"caughtUpP99Ms"`      // per subscriber
	CaughtUp           int      `json:"caughtUp"`           // subscribers that caught up within -catch-up-limit
	Missing            int64    `json:"missing"`            // statuses a subscriber never got, across the restart
	Duplicates         int64    `json:"duplicates"`         // statuses a subscriber got twice, or out of order
	Statements         *float64 `json:"statements"`         // during the storm
	StatementsPerConn  *float64 `json:"statementsPerConn"`  // Statements ÷ Resumed
	ServerCPUPercent   *float64 `json:"serverCpuPercent"`   // of a core, during the storm
	SubscriptionErrors int64    `json:"subscriptionErrors"` // error or complete from the server
	Errors             []string `json:"errors"`
}

// runStorm is the `storm` subcommand.
func runStorm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseStormFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	rep, err := measureStorm(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeStorm(stdout, rep)
	return nil
}

// measureStorm runs the storm once: subscribe, restart, backlog, resume.
func measureStorm(ctx context.Context, cfg *stormConfig, progress io.Writer) (*StormReport, error) {
	srv, err := newStormServer(cfg, progress)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := srv.start(ctx); err != nil {
		return nil, err
	}
	ep, _ := endpointsOf("http://" + srv.addr)
	client := &http.Client{Timeout: 30 * time.Second}
	a := &api{client: client, endpoint: ep.graphql}
	if a.token, err = a.signIn(ctx, "loadgen-storm"); err != nil {
		return nil, err
	}
	id, err := a.post(ctx, "storm: before anyone subscribes")
	if err != nil {
		return nil, err
	}
	first, _ := strconv.ParseInt(id, 10, 64)
	errs := &errorLog{}
	fl := &stormFleet{dialers: dialers("127.0.0.1", cfg.sources, cfg.timeout, false), ws: ep.ws, timeout: cfg.timeout, errs: errs}
	fl.subs = make([]*stormSub, cfg.conns)
	for i := range fl.subs {
		fl.subs[i] = &stormSub{i: i, first: first}
		fl.subs[i].last.Store(first)
	}
	fmt.Fprintf(progress, "storm: %d subscribers to %s\n", cfg.conns, ep.ws)
	if n := fl.connectAll(ctx, cfg.dialConcurrency); n < cfg.conns {
		return nil, fmt.Errorf("only %d of %d subscribed: %v", n, cfg.conns, errs.list())
	}
	// Live before the restart: each has the newest status.
	if id, err = a.post(ctx, "storm: live"); err != nil {
		return nil, err
	}
	fl.expect(mustInt(id), time.Now())
	if !fl.waitAll(ctx, mustInt(id), cfg.limit) {
		return nil, fmt.Errorf("not every subscriber had the live status within %v", cfg.limit)
	}
	rep := &StormReport{Conns: cfg.conns, Backlog: cfg.backlog}
	t0 := time.Now()
	if err := srv.restart(ctx); err != nil {
		return nil, err
	}
	rep.RestartMs = ms(time.Since(t0))
	fl.waitClosed(10 * time.Second)
	for i := range cfg.backlog {
		if id, err = a.post(ctx, fmt.Sprintf("storm: while away %d", i)); err != nil {
			return nil, err
		}
	}
	target := mustInt(id)
	pr := &probe{pid: srv.pid(), metricsURL: ep.metrics, client: client}
	before, okBefore := pr.metric(ctx, "switchboard_database_statements_total")
	fmt.Fprintf(progress, "restarted in %v; %d posted meanwhile; all reconnect\n", time.Since(t0).Round(time.Millisecond), cfg.backlog)
	cpu := startCPU(pr)
	start := time.Now()
	fl.expect(target, start)
	rep.Resumed = fl.connectAll(ctx, cfg.dialConcurrency)
	caught := fl.waitAll(ctx, target, cfg.limit)
	rep.CaughtUpMs = ms(time.Since(start))
	took := fl.caughtUpTimes(start)
	rep.CaughtUp = len(took)
	if len(took) > 0 {
		rep.CaughtUpP50Ms, rep.CaughtUpP99Ms = took[len(took)/2], took[len(took)*99/100]
	}
	cpu.stop()
	rep.ServerCPUPercent = cpu.serverPercent
	if after, ok := pr.metric(ctx, "switchboard_database_statements_total"); ok && okBefore {
		n := after - before
		rep.Statements = &n
		per := math.Round(n/float64(max(rep.Resumed, 1))*1e4) / 1e4
		rep.StatementsPerConn = &per
	}
	if !caught {
		errs.add(fmt.Sprintf("not every subscriber caught up within %v", cfg.limit))
	}
	// After the storm, live again: one more status for everyone.
	if id, err = a.post(ctx, "storm: after"); err == nil {
		fl.expect(mustInt(id), time.Now())
		fl.waitAll(ctx, mustInt(id), 10*time.Second)
	}
	fl.closeAll()
	fl.count(rep, mustInt(id))
	rep.Errors = errs.list()
	return rep, nil
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// stormServer is the server child process storm starts and restarts.
type stormServer struct {
	bin, addr string
	env       []string
	progress  io.Writer
	cmd       *exec.Cmd
	tmp       string // the data directory storm made, removed at the end
}

func newStormServer(cfg *stormConfig, progress io.Writer) (*stormServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	s := &stormServer{bin: cfg.server, addr: addr, progress: progress}
	dir := cfg.dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "loadgen-storm-"); err != nil {
			return nil, err
		}
		s.tmp = dir
	}
	s.env = append(os.Environ(), "ADDR="+addr, "DATA_DIR="+dir, "DEMO_FEED=false", "LOG_LEVEL=warn",
		"LIMIT_REQUESTS=0", "LIMIT_SIGNINS=0", "LIMIT_CONNS_PER_USER=0", "LIMIT_CONNS_PER_ADDR=0", "LIMIT_STATUSES=0")
	return s, nil
}

// start starts the server and waits until /readyz answers 200.
func (s *stormServer) start(ctx context.Context) error {
	s.cmd = exec.Command(s.bin)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.progress, s.progress
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s was not ready on %s within 30 s", s.bin, s.addr)
}

// halt stops the running server with SIGTERM (its clients are closed with
// 1001) and waits for it.
func (s *stormServer) halt() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func (s *stormServer) restart(ctx context.Context) error {
	s.halt()
	return s.start(ctx)
}

func (s *stormServer) pid() int { return s.cmd.Process.Pid }

func (s *stormServer) stop() {
	s.halt()
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
}

// stormSub is one subscriber across its connections: the statuses it got
// must run from first+1 up, each once, in order.
type stormSub struct {
	i        int
	first    int64 // the newest status when it first subscribed
	last     atomic.Int64
	bad      atomic.Int64 // a status out of sequence (missing before it, twice, or out of order)
	ended    atomic.Int64 // error or complete
	caughtAt atomic.Int64 // unix nanos when it reached the storm's target
	ws       *websocket.Conn
}

// stormFleet is the subscribers and how they connect.
type stormFleet struct {
	dialers []*websocket.Dialer
	ws      string
	timeout time.Duration
	errs    *errorLog
	subs    []*stormSub
	readers sync.WaitGroup
	target  atomic.Int64
}

// connectAll (re)connects every subscriber, concurrency at a time, each
// resuming after the last status it got; it returns how many subscribed.
func (fl *stormFleet) connectAll(ctx context.Context, concurrency int) int {
	var ok atomic.Int64
	next := make(chan *stormSub)
	var workers sync.WaitGroup
	for range min(concurrency, len(fl.subs)) {
		workers.Go(func() {
			for s := range next {
				if err := fl.connect(ctx, s); err != nil {
					fl.errs.add("connect: " + err.Error())
					continue
				}
				ok.Add(1)
				fl.readers.Go(func() { fl.read(s) })
			}
		})
	}
	for _, s := range fl.subs {
		select {
		case next <- s:
		case <-ctx.Done():
		}
	}
	close(next)
	workers.Wait()
	return int(ok.Load())
}

// connect dials, initialises and subscribes s after its last status.
func (fl *stormFleet) connect(ctx context.Context, s *stormSub) error {
	d := *fl.dialers[s.i%len(fl.dialers)]
	d.Subprotocols = []string{"graphql-transport-ws"}
	ctx, cancel := context.WithTimeout(ctx, fl.timeout)
	defer cancel()
	ws, _, err := d.DialContext(ctx, fl.ws, nil)
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init","payload":{}}`)); err != nil {
		_ = ws.Close()
		return err
	}
	if _, msg, err := ws.ReadMessage(); err != nil || !bytes.Contains(msg, []byte(`"connection_ack"`)) {
		_ = ws.Close()
		return fmt.Errorf("no connection_ack: %v %.100s", err, msg)
	}
	sub := mustJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
		"query": subscriptionQuery, "variables": map[string]any{"a": strconv.FormatInt(s.last.Load(), 10)}}})
	if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
		_ = ws.Close()
		return err
	}
	_ = ws.SetReadDeadline(time.Time{})
	s.ws = ws
	return nil
}

// read follows s's connection until it closes, checking each status.
func (fl *stormFleet) read(s *stormSub) {
	for {
		_, msg, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		i := bytes.Index(msg, statusPrefix)
		if i < 0 {
			switch {
			case bytes.Contains(msg, []byte(`"type":"ping"`)):
				_ = s.ws.WriteMessage(websocket.TextMessage, pongMessage)
			case bytes.Contains(msg, []byte(`"type":"error"`)), bytes.Contains(msg, []byte(`"type":"complete"`)):
				s.ended.Add(1)
				fl.errs.add(fmt.Sprintf("subscriber %d: %.200s", s.i, msg))
			}
			continue
		}
		id, _, ok := cutInt(msg[i+len(statusPrefix):], '"')
		if !ok {
			continue
		}
		if id != s.last.Load()+1 {
			s.bad.Add(1)
		}
		if id > s.last.Load() {
			s.last.Store(id)
		}
		if t := fl.target.Load(); t > 0 && id >= t {
			s.caughtAt.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

// expect makes target the status whose arrival counts as caught up, from
// start on (a subscriber that has it already caught up at start).
func (fl *stormFleet) expect(target int64, start time.Time) {
	fl.target.Store(target)
	for _, s := range fl.subs {
		s.caughtAt.Store(0)
		if s.last.Load() >= target {
			s.caughtAt.Store(start.UnixNano())
		}
	}
}

// waitAll waits up to limit for every subscriber to have status target
// (expect first).
func (fl *stormFleet) waitAll(ctx context.Context, target int64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !slices.ContainsFunc(fl.subs, func(s *stormSub) bool { return s.last.Load() < target }) {
			return true
		}
		if sleepCtx(ctx, 5*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

// waitClosed waits up to limit for every connection to be closed by the
// server.
func (fl *stormFleet) waitClosed(limit time.Duration) {
	done := make(chan struct{})
	go func() { fl.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		fl.closeAll()
	}
}

// closeAll closes every connection and waits for the readers.
func (fl *stormFleet) closeAll() {
	for _, s := range fl.subs {
		if s.ws != nil {
			_ = s.ws.Close()
		}
	}
	fl.readers.Wait()
}

// caughtUpTimes returns how long after start each subscriber that caught
// up did, in milliseconds, shortest first.
func (fl *stormFleet) caughtUpTimes(start time.Time) []float64 {
	var took []float64
	for _, s := range fl.subs {
		if at := s.caughtAt.Load(); at > 0 {
			took = append(took, ms(time.Unix(0, at).Sub(start)))
		}
	}
	slices.Sort(took)
	return took
}

// count fills the report's per-subscriber figures: what each missed up to
// the newest status, newest, or got out of sequence.
func (fl *stormFleet) count(rep *StormReport, newest int64) {
	for _, s := range fl.subs {
		rep.Missing += max(0, newest-s.last.Load())
		rep.Duplicates += s.bad.Load()
		rep.SubscriptionErrors += s.ended.Load()
	}
}

func writeStorm(w io.Writer, r *StormReport) {
	fmt.Fprintf(w, "reconnect storm\t%d subscribers, %d resumed after the restart (%s to restart), %d statuses posted while away\n", r.Conns, r.Resumed, msStr(r.RestartMs), r.Backlog)
	fmt.Fprintf(w, "all caught up\t%s after reconnecting began (%d of %d caught up; each: p50 %s, p99 %s); server CPU %s\n", msStr(r.CaughtUpMs), r.CaughtUp, r.Resumed, msStr(r.CaughtUpP50Ms), msStr(r.CaughtUpP99Ms), pct(r.ServerCPUPercent))
	fmt.Fprintf(w, "missing / out of sequence\t%d / %d; subscription errors %d\n", r.Missing, r.Duplicates, r.SubscriptionErrors)
	if r.Statements != nil {
		fmt.Fprintf(w, "database statements during the storm\t%.0f (%.4f per subscriber)\n", *r.Statements, *r.StatementsPerConn)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error\t%s\n", e)
	}
}
