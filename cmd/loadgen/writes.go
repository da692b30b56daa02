package main

import (
	"cmp"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver the server uses

	"github.com/switchboardhq/switchboard/store"
)

// The writes workload: -writers concurrent writers, each as fast as it is
// answered, for -duration per phase, in one invocation against the
// server's own MySQL/MariaDB database:
//
//  1. plain: an INSERT of a row like a status (author, text, time) into a
//     scratch table, one autocommitted statement each, through
//     go-sql-driver/mysql: the reference;
//  2. head: the same INSERT in a transaction behind a stream head row, as
//     the store appends to an ordered stream (UPDATE the head, SELECT it,
//     INSERT, COMMIT): the price of the head row alone;
//  3. store: the store's own append of a status (store.CreateStatus, in
//     loadgen's process, on the same database): the head row with the
//     store's group commit, without HTTP and GraphQL;
//  4. postStatus through the server (HTTP, each writer a guest of its own);
//  5. postMessage to one public room through the server.
//
// It prints each phase's writes per second, its latency, the ratio to the
// plain INSERTs and, for the server's phases, the database statements per
// write (switchboard_database_statements_total) and the server's CPU. With
// -rounds N the five phases run N times in turn, each round's ratios are to
// its own plain INSERTs, and each phase's row is its median round, with the
// lowest and highest ratio of all rounds: the rate of the plain INSERTs on
// a shared machine moves by half from one minute to the next. The
// scratch tables (loadgen_writes, loadgen_stream, loadgen_heads) are
// dropped at the end.
const (
	postStatusMutation  = `mutation($t: String!){ postStatus(text: $t){ id } }`
	postMessageMutation = `mutation($r: ID!, $t: String!){ postMessage(roomId: $r, text: $t){ id } }`
	createRoomMutation  = `mutation($n: String!){ createRoom(name: $n){ id } }`
)

// writesConfig is the `writes` subcommand's flags.
type writesConfig struct {
	url      string
	mysqlURL string
	writers  int
	duration time.Duration
	pid      int
	rounds   int
	json     bool
}

func parseWritesFlags(args []string, stderr io.Writer) (*writesConfig, error) {
	c := &writesConfig{}
	fs := flag.NewFlagSet("loadgen writes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the server's base URL (on MySQL/MariaDB, with LIMIT_STATUSES=0 LIMIT_MESSAGES=0 LIMIT_REQUESTS=0 LIMIT_SIGNINS=0)")
	fs.StringVar(&c.mysqlURL, "mysql-url", "", "the server's DATABASE_URL, for the plain INSERTs (scratch tables, dropped at the end)")
	fs.IntVar(&c.writers, "writers", 32, "concurrent writers in each phase")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each phase writes")
	fs.IntVar(&c.pid, "pid", 0, "the server's PID, to report its CPU from /proc (0: not reported)")
	fs.IntVar(&c.rounds, "rounds", 1, "how many times the phases run in turn; each phase's row is its median round by ratio")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of the table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var problems []string
	if c.mysqlURL == "" {
		problems = append(problems, "-mysql-url is required (the server's DATABASE_URL)")
	}
	if c.writers < 1 || c.duration <= 0 || c.rounds < 1 {
		problems = append(problems, "-writers and -rounds must be at least 1 and -duration positive")
	}
	if err := checkFlags(fs, 1, 1, problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// WritesReport is the result of the writes workload.
type WritesReport struct {
	Target  string          `json:"target"`
	Writers int             `json:"writers"`
	Phases  []PhaseReport   `json:"phases"` // each phase's median round
	Rounds  [][]PhaseReport `json:"rounds"` // every round's phases, in the order they ran
	Errors  []string        `json:"errors"`
}

// PhaseReport is one phase of the writes workload.
type PhaseReport struct {
	Name               string     `json:"name"`
	Writes             int64      `json:"writes"`
	Failed             int64      `json:"failed"`
	PerSec             float64    `json:"perSec"`
	RatioToPlain       float64    `json:"ratioToPlain"` // to the plain INSERTs of its round
	RatioRange         [2]float64 `json:"ratioRange"`   // lowest and highest over the rounds (in Phases)
	Latency            Latency    `json:"latency"`
	StatementsPerWrite *float64   `json:"statementsPerWrite"` // the server's phases
	ServerCPUPercent   *float64   `json:"serverCpuPercent"`
}

// runWrites is the `writes` subcommand.
func runWrites(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	w := workload[*writesConfig, *WritesReport]{parse: parseWritesFlags, measure: measureWrites, table: writeWritesTable}
	return w.run(ctx, args, stdout, stderr, func(c *writesConfig) (bool, bool) { return false, c.json })
}

// writePhase is one phase of the workload: what each writer does, n its
// count of writes so far.
type writePhase struct {
	name   string
	server bool // through the server: its statements and CPU are reported
	write  func(ctx context.Context, i int, n int64) error
}

func measureWrites(ctx context.Context, cfg *writesConfig, progress io.Writer) (*WritesReport, error) {
	ep, err := endpointsOf(cfg.url)
	if err != nil {
		return nil, err
	}
	dsn, err := store.MySQLDSN(cfg.mysqlURL, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("-mysql-url: %w", err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(cfg.writers)
	db.SetMaxIdleConns(cfg.writers)
	if err := scratchTables(ctx, db); err != nil {
		return nil, err
	}
	defer func() {
		_, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS loadgen_writes, loadgen_stream, loadgen_heads")
	}()
	transport := &http.Transport{MaxIdleConns: cfg.writers + 8, MaxIdleConnsPerHost: cfg.writers + 8}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	runID, errs := newRunID(), &errorLog{}
	writers, room, err := writersOf(ctx, client, ep, cfg.writers, runID)
	if err != nil {
		return nil, err
	}
	sdb, err := store.Open(ctx, cfg.mysqlURL, store.Options{})
	if err != nil {
		return nil, err
	}
	defer sdb.Close()
	author, err := sdb.CreateUser(ctx, "lg-"+runID)
	if err != nil {
		return nil, err
	}
	text := func(i int, n int64) string { return fmt.Sprintf("lg:%s:%d:%d", runID, i, n) }
	phases := []writePhase{
		{"plain INSERT (driver)", false, func(ctx context.Context, i int, n int64) error {
			_, err := db.ExecContext(ctx, "INSERT INTO loadgen_writes (author_id, text, created_at) VALUES (?, ?, ?)", i+1, text(i, n), time.Now().UTC())
			return err
		}},
		{"INSERT behind a head row (driver)", false, func(ctx context.Context, i int, n int64) error {
			return headInsert(ctx, db, int64(i+1), text(i, n))
		}},
		{"store.CreateStatus (in loadgen)", false, func(ctx context.Context, i int, n int64) error {
			_, _, err := sdb.CreateStatus(ctx, author, text(i, n), time.Now(), nil)
			return err
		}},
		{"postStatus (server)", true, func(ctx context.Context, i int, n int64) error {
			var out map[string]any
			return writers[i].do(ctx, postStatusMutation, map[string]any{"t": text(i, n)}, &out)
		}},
		{"postMessage (server)", true, func(ctx context.Context, i int, n int64) error {
			var out map[string]any
			return writers[i].do(ctx, postMessageMutation, map[string]any{"r": room, "t": text(i, n)}, &out)
		}},
	}
	rep := &WritesReport{Target: cfg.url, Writers: cfg.writers}
	pr := &probe{pid: cfg.pid, metricsURL: ep.metrics, client: client}
	for round := range cfg.rounds {
		if cfg.rounds > 1 {
			fmt.Fprintf(progress, "round %d of %d\n", round+1, cfg.rounds)
		}
		var done []PhaseReport
		for _, ph := range phases {
			done = append(done, runPhase(ctx, cfg, pr, errs, ph, done, progress))
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rep.Rounds = append(rep.Rounds, done)
	}
	rep.Phases = medianRounds(rep.Rounds)
	rep.Errors = errs.list()
	return rep, nil
}

// medianRounds returns each phase's median round by its ratio to the plain
// INSERTs (the lower of the two middle ones for an even count), with the
// range of its ratios over all rounds.
func medianRounds(rounds [][]PhaseReport) []PhaseReport {
	var out []PhaseReport
	for i := range rounds[0] {
		runs := make([]PhaseReport, len(rounds))
		for r := range rounds {
			runs[r] = rounds[r][i]
		}
		slices.SortStableFunc(runs, func(a, b PhaseReport) int { return cmp.Compare(a.RatioToPlain, b.RatioToPlain) })
		med := runs[(len(runs)-1)/2]
		med.RatioRange = [2]float64{runs[0].RatioToPlain, runs[len(runs)-1].RatioToPlain}
		out = append(out, med)
	}
	return out
}

// runPhase measures one phase; the first of before is the reference.
func runPhase(ctx context.Context, cfg *writesConfig, pr *probe, errs *errorLog, ph writePhase, before []PhaseReport, progress io.Writer) PhaseReport {
	fmt.Fprintf(progress, "%s: %d writers for %v\n", ph.name, cfg.writers, cfg.duration)
	stmt0, ok0 := pr.metric(ctx, "switchboard_database_statements_total")
	window := startCPU(pr)
	res := hammer(ctx, cfg.writers, cfg.duration, errs, ph.write)
	window.stop()
	res.Name = ph.name
	if ph.server {
		res.ServerCPUPercent = window.serverPercent
		if stmt1, ok1 := pr.metric(ctx, "switchboard_database_statements_total"); ok0 && ok1 && res.Writes > 0 {
			v := round2((stmt1 - stmt0) / float64(res.Writes))
			res.StatementsPerWrite = &v
		}
	}
	res.RatioToPlain = 1
	if len(before) > 0 && before[0].PerSec > 0 {
		res.RatioToPlain = round2(res.PerSec / before[0].PerSec)
	}
	fmt.Fprintf(progress, "  %.0f/s, p50 %.2f ms, p99 %.2f ms, %d failed\n", res.PerSec, res.Latency.P50Ms, res.Latency.P99Ms, res.Failed)
	return res
}

// scratchTables creates the plain phases' tables: a row like a status's,
// and a stream head.
func scratchTables(ctx context.Context, db *sql.DB) error {
	for _, q := range []string{
		"DROP TABLE IF EXISTS loadgen_writes, loadgen_stream, loadgen_heads",
		"CREATE TABLE loadgen_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, author_id BIGINT NOT NULL, text VARCHAR(2000) NOT NULL, created_at DATETIME(3) NOT NULL, KEY (author_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE loadgen_stream (id BIGINT PRIMARY KEY, author_id BIGINT NOT NULL, text VARCHAR(2000) NOT NULL, created_at DATETIME(3) NOT NULL, KEY (author_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE loadgen_heads (name VARCHAR(191) PRIMARY KEY, head BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
		"INSERT INTO loadgen_heads VALUES ('s', 0)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("scratch tables: %w", err)
		}
	}
	return nil
}

// headInsert appends a row behind the head row, as the store appends to a
// stream.
func headInsert(ctx context.Context, db *sql.DB, author int64, text string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "UPDATE loadgen_heads SET head = head + 1 WHERE name = 's'"); err != nil {
		return err
	}
	var head int64
	if err := tx.QueryRowContext(ctx, "SELECT head FROM loadgen_heads WHERE name = 's'").Scan(&head); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO loadgen_stream (id, author_id, text, created_at) VALUES (?, ?, ?, ?)", head, author, text, time.Now().UTC()); err != nil {
		return err
	}
	return tx.Commit()
}

// writersOf signs in n guests and creates a public room for them.
func writersOf(ctx context.Context, client *http.Client, ep endpoints, n int, runID string) ([]*api, string, error) {
	writers := make([]*api, n)
	for i := range writers {
		a := &api{client: client, endpoint: ep.graphql}
		token, err := a.signIn(ctx, fmt.Sprintf("lg-%s-w%d", runID, i))
		if err != nil {
			return nil, "", err
		}
		a.token = token
		writers[i] = a
	}
	var out struct {
		CreateRoom struct {
			ID string `json:"id"`
		} `json:"createRoom"`
	}
	if err := writers[0].do(ctx, createRoomMutation, map[string]any{"n": "lg-" + runID}, &out); err != nil {
		return nil, "", fmt.Errorf("create room: %w", err)
	}
	return writers, out.CreateRoom.ID, nil
}

// hammer runs write on writers goroutines, each as fast as it returns, for
// d, and reports the writes per second and their latencies.
func hammer(ctx context.Context, writers int, d time.Duration, errs *errorLog, write func(ctx context.Context, i int, n int64) error) PhaseReport {
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	// The clock, not ctx.Err, says when the phase is over: a context made
	// from ctx after its deadline is done at once, even before ctx's own
	// timer has fired, and a write that fails for it is not a failure.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		lat        = newHistogram()
		wg         sync.WaitGroup
	)
	t0 := time.Now()
	for i := range writers {
		wg.Go(func() {
			mine := newHistogram()
			for n := int64(0); !over(); n++ {
				start := time.Now()
				if err := write(ctx, i, n); err != nil {
					if !over() {
						failed.Add(1)
						errs.add(err.Error())
					}
					continue
				}
				mine.record(time.Since(start))
				ok.Add(1)
			}
			mu.Lock()
			lat.merge(mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	return PhaseReport{Writes: ok.Load(), Failed: failed.Load(), PerSec: round2(float64(ok.Load()) / secs), Latency: lat.summary()}
}

// writeWritesTable prints the report as a table.
func writeWritesTable(out io.Writer, r *WritesReport) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "writes workload\t%s, %d concurrent writers, %d round(s); each row is the phase's median round\n", r.Target, r.Writers, len(r.Rounds))
	fmt.Fprintf(w, "phase\twrites/s\tratio to plain\tratios of all rounds\tp50 / p99\tfailed\tstatements per write\tserver CPU\n")
	for i, p := range r.Phases {
		all := make([]string, len(r.Rounds))
		for j, round := range r.Rounds {
			all[j] = strconv.FormatFloat(round[i].RatioToPlain, 'f', 2, 64)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%s / %s\t%d\t%s\t%s\n", p.Name, p.PerSec, strconv.FormatFloat(p.RatioToPlain, 'f', 2, 64), strings.Join(all, " "),
			msStr(p.Latency.P50Ms), msStr(p.Latency.P99Ms), p.Failed, num(p.StatementsPerWrite), pct(p.ServerCPUPercent))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error\t%s\n", e)
	}
	_ = w.Flush()
}
