package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The notifications workload: -users guests, each on one connection
// subscribed to its notificationAdded (half of them with after, half
// without, as clients write both) and its unreadCount, and an admin
// broadcasting at -rate. It times publish→receive of each notification and
// how long each user's unread count takes to show the broadcast, then
// measures the status feed (statusPosted) at the same size and rate in the
// same invocation, the reference the figures are compared with.
const (
	notificationAddedAfter = `subscription($a: ID){ notificationAdded(after: $a){ id title } }`
	notificationAddedLive  = `subscription{ notificationAdded{ id title } }`
	unreadCountSubscribe   = `subscription{ unreadCount }`
	broadcastMutation      = `mutation($t: String!){ sendNotification(input: {title: $t}){ id } }`
)

// notifConfig is the `notifications` subcommand's flags.
type notifConfig struct {
	url             string
	users           int
	rate            float64
	duration        time.Duration
	drain           time.Duration
	settle          time.Duration
	pid             int
	sources         int
	dialConcurrency int
	timeout         time.Duration
	adminToken      string
	reference       bool
	json            bool
	room            string // the room workload: the room's id ("" looks up general)
	roomMode        bool   // the room workload, not notifications
	noLists         bool   // the room workload: members do not subscribe to roomsChanged
	sse             bool   // each subscription over an event stream of its own, not one WebSocket per user
}

func parseNotifFlags(args []string, stderr io.Writer) (*notifConfig, error) {
	return parseWorkloadFlags("notifications", args, stderr)
}

// parseWorkloadFlags parses the flags of the notifications workload, or of
// the room workload (which has -room, and posts as a guest).
func parseWorkloadFlags(name string, args []string, stderr io.Writer) (*notifConfig, error) {
	c := &notifConfig{roomMode: name == "room"}
	fs := flag.NewFlagSet("loadgen "+name, flag.ContinueOnError)
	lists := true
	if c.roomMode {
		fs.StringVar(&c.room, "room", "", "the public room's id (default: the general room)")
		fs.BoolVar(&lists, "lists", true, "members also follow their room lists (roomsChanged); false: messageAdded alone, to see what the lists cost")
	}
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the server's base URL")
	fs.IntVar(&c.users, "users", 1000, "guests, each on one connection subscribed to notificationAdded and unreadCount")
	fs.Float64Var(&c.rate, "rate", 1, "broadcasts per second")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to broadcast")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait after the last broadcast for what is still due")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause after every user is subscribed, before broadcasting")
	fs.IntVar(&c.pid, "pid", 0, "the server's PID, to report its RSS and CPU from /proc (0: not reported)")
	fs.IntVar(&c.sources, "sources", 32, "spread connections over the source addresses 127.0.0.1..127.0.0.N (loopback targets only)")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 200, "users signing in and connecting at once")
	fs.DurationVar(&c.timeout, "connect-timeout", 30*time.Second, "limit for one user's sign-in, dial, init and first unread count")
	fs.StringVar(&c.adminToken, "admin-token", "", "an admin's bearer token, to broadcast (switchboard token --name ops --role admin)")
	fs.BoolVar(&c.reference, "reference", true, "then measure the status feed at the same -users and -rate (loadgen run) and print the ratios")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	proto := fs.String("proto", "ws", "ws: each user's subscriptions over one WebSocket (graphql-transport-ws); sse: over one event stream each (GraphQL over Server-Sent Events), the reference too")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.noLists, c.sse = !lists, *proto == "sse"
	var problems []string
	if c.users < 1 {
		problems = append(problems, "-users must be at least 1")
	}
	if c.rate <= 0 || c.duration <= 0 {
		problems = append(problems, "-rate and -duration must be positive")
	}
	if *proto != "ws" && *proto != "sse" {
		problems = append(problems, "-proto must be ws or sse")
	}
	if c.adminToken == "" && !c.roomMode {
		problems = append(problems, "-admin-token is required (switchboard token --name ops --role admin)")
	}
	if err := checkFlags(fs, c.dialConcurrency, c.sources, problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// NotificationsReport is the result of the notifications workload.
type NotificationsReport struct {
	Target        string `json:"target"`
	Users         int    `json:"users"`
	Connected     int    `json:"connected"`
	ConnectErrors int    `json:"connectErrors"`
	RunID         string `json:"runId"`

	Lists           bool    `json:"lists"`      // the room workload: members followed roomsChanged (UnreadCount)
	Broadcasts      int64   `json:"broadcasts"` // successful ones
	BroadcastErrors int64   `json:"broadcastErrors"`
	Rate            float64 `json:"rate"`

	// NotificationAdded: publish→receive of each broadcast on each
	// connection; Missing and Duplicates count deliveries.
	NotificationAdded DeliveryReport `json:"notificationAdded"`
	// UnreadCount: from the broadcast's publish to the first unreadCount
	// showing it; Missing counts users whose last count falls short.
	UnreadCount DeliveryReport `json:"unreadCount"`

	Server                   ServerReport `json:"server"`
	StatementsFirstBroadcast *float64     `json:"statementsFirstBroadcast"` // switchboard_database_statements_total until every user has the first broadcast
	StatementsPerBroadcast   *float64     `json:"statementsPerBroadcast"`   // the same from then on, ÷ the broadcasts after the first
	SlowConsumerDisconnects  *int64       `json:"slowConsumerDisconnects"`
	Disconnects              int64        `json:"disconnects"`
	Errors                   []string     `json:"errors"`
	// DecodedResults counts the next messages loadgen decoded as JSON
	// rather than scanned (scanNext): errors, or a shape it did not expect.
	DecodedResults int64 `json:"decodedResults"`

	// Reference is the status feed measured at the same size and rate.
	Reference *Report `json:"reference,omitempty"`
	// Ratios of p99 latencies to the reference's publish→receive p99.
	NotificationAddedP99Ratio *float64 `json:"notificationAddedP99Ratio,omitempty"`
	UnreadCountP99Ratio       *float64 `json:"unreadCountP99Ratio,omitempty"`
}

// DeliveryReport is what the users received of one subscription field.
type DeliveryReport struct {
	Expected   int64   `json:"expected"`
	Received   int64   `json:"received"`
	Missing    int64   `json:"missing"`
	Duplicates int64   `json:"duplicates"`
	Latency    Latency `json:"latency"`
}

// runNotifications is the `notifications` subcommand.
func runNotifications(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	w := workload[*notifConfig, *NotificationsReport]{parseNotifFlags, measureNotifications, addReference, writeNotifTable}
	return w.run(ctx, args, stdout, stderr, func(c *notifConfig) (bool, bool) { return c.reference, c.json })
}

// addReference measures statusPosted with as many connections and the same
// rate and duration, and the ratios of the p99s.
func addReference(ctx context.Context, cfg *notifConfig, rep *NotificationsReport, progress io.Writer) error {
	rc, err := parseRunFlags([]string{
		"-url", cfg.url, "-conns", strconv.Itoa(cfg.users), "-rate", fmt.Sprint(cfg.rate),
		"-duration", cfg.duration.String(), "-drain", cfg.drain.String(), "-settle", cfg.settle.String(),
		"-pid", strconv.Itoa(cfg.pid), "-sources", strconv.Itoa(cfg.sources),
		"-dial-concurrency", strconv.Itoa(cfg.dialConcurrency), "-connect-timeout", cfg.timeout.String(),
		"-proto", map[bool]string{false: "transport", true: "sse"}[cfg.sse],
	}, progress)
	if err != nil {
		return err
	}
	fmt.Fprintln(progress, "status feed reference:")
	if rep.Reference, err = measure(ctx, rc, progress); err != nil {
		return err
	}
	if ref := rep.Reference.Latency.P99Ms; ref > 0 {
		a, u := round2(rep.NotificationAdded.Latency.P99Ms/ref), round2(rep.UnreadCount.Latency.P99Ms/ref)
		rep.NotificationAddedP99Ratio, rep.UnreadCountP99Ratio = &a, &u
		if cfg.noLists {
			rep.UnreadCountP99Ratio = nil
		}
	}
	return nil
}

// notifRun is one notifications measurement's shared state.
type notifRun struct {
	cfg         *notifConfig
	room        *roomWorkload // set for the room workload
	ep          endpoints
	client      *http.Client
	runID       string
	titlePrefix []byte // "lg:<runID>:", which starts the titles of this run's broadcasts
	total       int    // broadcasts planned
	errs        *errorLog
	users       []*notifUser
	mu          sync.Mutex
	sent        []int64      // unix nanos each broadcast was sent, by number
	ids         []int64      // the id each got, by number (0: failed)
	added       atomic.Int64 // first deliveries of this run's broadcasts
	shown       atomic.Int64 // broadcasts shown by unread counts, summed over users
	lost        atomic.Int64 // users whose connection failed
	decoded     atomic.Int64 // next messages scanNext left to json.Unmarshal
	progress    io.Writer
}

func measureNotifications(ctx context.Context, cfg *notifConfig, progress io.Writer) (*NotificationsReport, error) {
	ep, err := endpointsOf(cfg.url)
	if err != nil {
		return nil, err
	}
	if limit, err := raiseNoFile(); err != nil {
		return nil, err
	} else if need := uint64(cfg.users + 128); need > limit {
		return nil, fmt.Errorf("-users %d needs about %d open files, but RLIMIT_NOFILE is %d", cfg.users, need, limit)
	}
	transport := &http.Transport{MaxIdleConns: cfg.dialConcurrency + 8, MaxIdleConnsPerHost: cfg.dialConcurrency + 8}
	defer transport.CloseIdleConnections()
	r := &notifRun{
		cfg: cfg, ep: ep, client: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		runID: newRunID(), total: max(1, int(cfg.rate*cfg.duration.Seconds())), errs: &errorLog{}, progress: progress,
	}
	r.sent, r.ids = make([]int64, r.total), make([]int64, r.total)
	r.titlePrefix = []byte("lg:" + r.runID + ":")
	pr := &probe{pid: cfg.pid, metricsURL: ep.metrics, client: r.client}
	rep := &NotificationsReport{Target: cfg.url, Users: cfg.users, RunID: r.runID, Rate: cfg.rate}
	rep.Server.PID = cfg.pid
	rep.Server.RSSBeforeKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesBefore = opt(pr.goroutines(ctx))
	if cfg.roomMode {
		if r.room, err = r.setUpRoom(ctx); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "loadgen %s %s: %d users (run %s)\n", r.workload(), cfg.url, cfg.users, r.runID)
	defer r.closeAll()
	if err := r.connectAll(ctx); err != nil {
		return nil, err
	}
	if err := r.primeRoom(ctx); err != nil {
		return nil, err
	}
	rep.Connected, rep.ConnectErrors = len(r.users), cfg.users-len(r.users)
	if err := sleepCtx(ctx, cfg.settle); err != nil {
		return nil, err
	}
	rep.Server.RSSSubscribedKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesSubscribed = opt(pr.goroutines(ctx))
	slow0, okC := pr.metric(ctx, "switchboard_slow_consumer_disconnects_total")
	stmts := r.countStatements(ctx, pr)
	window := startCPU(pr)
	r.broadcast(ctx)
	r.waitDrain(ctx)
	window.stop()
	rep.Server.CPUPercent = window.serverPercent
	rep.Server.RSSEndKiB = opt(pr.rssKiB())
	rep.Server.GoroutinesEnd = opt(pr.goroutines(ctx))
	r.fill(rep)
	rep.StatementsFirstBroadcast, rep.StatementsPerBroadcast = stmts(rep.Broadcasts)
	if slow1, ok := pr.metric(ctx, "switchboard_slow_consumer_disconnects_total"); ok && okC {
		v := int64(slow1 - slow0)
		rep.SlowConsumerDisconnects = &v
	}
	rep.Errors = r.errs.list()
	return rep, ctx.Err()
}

// countStatements reads switchboard_database_statements_total now, once
// every user has received the first broadcast, and when the returned
// function is called after the run: it then reports the statements from
// the start to the first broadcast's delivery, and per broadcast after it.
// The first live event of a subscription without after costs a statement
// or two of its own (it starts its shared delivery, which looks the user
// up), once per subscriber rather than per broadcast.
func (r *notifRun) countStatements(ctx context.Context, pr *probe) func(broadcasts int64) (first, per *float64) {
	start, okStart := pr.metric(ctx, "switchboard_database_statements_total")
	var (
		afterFirst float64
		okFirst    bool
		done       = make(chan struct{})
	)
	go func() {
		defer close(done)
		deadline := time.Now().Add(r.cfg.duration + r.cfg.drain)
		for r.added.Load() < int64(len(r.users)) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
		}
		afterFirst, okFirst = pr.metric(ctx, "switchboard_database_statements_total")
	}()
	return func(broadcasts int64) (first, per *float64) {
		<-done
		end, okEnd := pr.metric(ctx, "switchboard_database_statements_total")
		if !okStart || !okFirst || !okEnd || broadcasts < 1 {
			return nil, nil
		}
		f := afterFirst - start
		first = &f
		if broadcasts > 1 {
			v := round2((end - afterFirst) / float64(broadcasts-1))
			per = &v
		}
		return first, per
	}
}

// notifUser is one signed-in user's connection. Its fields are owned by its
// read loop until closeAll has waited for it.
type notifUser struct {
	ws         *websocket.Conn
	streams    []io.Closer // with -proto sse: the bodies of its event streams, instead of ws
	got        bitset      // broadcast numbers received on notificationAdded
	latencies  []int64     // nanos from publish to receive, per broadcast received
	duplicates int64
	initial    int     // the first unread count
	counts     []int64 // unix nanos the count first showed k more than initial, at k-1
	last       int     // the last unread count
	lost       bool    // the connection failed
	done       chan struct{}

	primedAdded, primedChanged bool // the room workload: a message arrived on messageAdded, roomsChanged
}

// connectAll signs in and connects -users users, -dial-concurrency at a
// time; a user who fails is left out (and counted as a connect error).
func (r *notifRun) connectAll(ctx context.Context) error {
	ds := dialers(r.ep.host, r.cfg.sources, r.cfg.timeout, false)
	cs := sseClients(r.ep.host, r.cfg.sources, r.cfg.timeout, false)
	t0 := time.Now()
	users, err := connectEach(ctx, r.cfg.users, r.cfg.dialConcurrency, r.errs, func(ctx context.Context, i int) (*notifUser, error) {
		if r.cfg.sse {
			return r.connectSSE(ctx, cs[i%len(cs)], i)
		}
		return r.connect(ctx, ds[i%len(ds)], i)
	})
	r.users = users
	fmt.Fprintf(r.progress, "connected %d/%d users in %v\n", len(r.users), r.cfg.users, time.Since(t0).Round(time.Millisecond))
	return err
}
