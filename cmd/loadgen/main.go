// Command loadgen measures Switchboard's subscription fan-out from the
// outside, the way clients see it: many WebSocket connections subscribed to
// statusPosted, a publisher posting statuses over HTTP at a set rate, and
// every delivery checked and timed.
//
// Usage:
//
//	loadgen run [flags]              measure a server (the default subcommand)
//	loadgen notifications [flags]    measure notification broadcasts, then the status feed at the same size
//	loadgen room [flags]             measure one busy public room, then the status feed at the same size
//	loadgen storm -server BINARY     restart a server under N resuming subscribers (see storm.go)
//	loadgen dashboard [flags]        measure dashboard and kpiUpdated subscribers, then the status feed at the same size
//	loadgen writes [flags]           measure postStatus and postMessage against plain INSERTs on the server's MySQL
//	loadgen baseline -addr HOST:PORT serve the minimal fan-out to compare with
//
// Start the server, with the limits per client address off (loadgen's
// clients share a few loopback addresses), then point loadgen at it:
//
//	go build -o /tmp/switchboard . && ADDR=127.0.0.1:8080 DATA_DIR=$(mktemp -d) LIMIT_REQUESTS=0 LIMIT_SIGNINS=0 /tmp/switchboard &
//	go run ./cmd/loadgen run -conns 10000 -rate 10 -duration 30s -pid $(pgrep -n switchboard)
//	go run ./cmd/loadgen run -conns 10000 -ramp 50,100,200,400,800 -step 10s -pid $(pgrep -n switchboard) -compare
//	go run ./cmd/loadgen run -conns 10000 -duration 0 -idle 60s -pid $(pgrep -n switchboard)
//
// What `run` does: it signs in as a guest (or uses -token), reads the newest
// status id, and opens -conns connections (-dial-concurrency at a time, from
// the source addresses 127.0.0.1..127.0.0.N so loopback ports do not run
// out), each doing connection_init, waiting for connection_ack and
// subscribing to
//
//	subscription($a: ID){ statusPosted(after: $a){ id text } }
//
// with $a the newest id, so every later post is due to every connection even
// if its subscription goes live late. After -settle it optionally measures
// an -idle window, then posts "lg:<run>:<seq>:<send unix nanos>" at -rate for
// -duration (or each -ramp rate for -step), waits up to -drain for the
// deliveries still due, and reports: connect time, posts, deliveries
// expected/received, missing, duplicated, deliveries/s, publish→receive
// latency percentiles, and with -pid the server's RSS and CPU from /proc;
// server goroutines come from go_goroutines in its /metrics. A ramp stops at
// the first step with p99 above -max-p99 or any loss, and reports the highest
// sustained deliveries/s. -compare then measures `loadgen baseline` (an
// encode-once gorilla/websocket fan-out, started as a child process on
// 127.0.0.1) the same way, for the upper bound on the same machine. -json
// prints one JSON object instead of the table.
//
// What `notifications` does: it signs in -users guests and opens one
// connection for each, subscribed to notificationAdded (half of them with
// after: "0", half without) and to unreadCount; once every first count has
// arrived and -settle has passed, an admin (-admin-token) broadcasts
// "lg:<run>:<seq>:<send unix nanos>" at -rate for -duration. It reports the
// publish→receive latency of notificationAdded, the time from a broadcast
// to the first unreadCount that shows it, what is missing or duplicated,
// the server's CPU, RSS and goroutines, switchboard_database_statements_total
// per broadcast and slow-consumer disconnects; then (unless -reference=false)
// it measures statusPosted with as many connections at the same rate, as
// `run` does, and prints the ratios of the p99s. With -proto sse (also for
// `room`) each user's subscriptions are event streams, one per
// subscription (GraphQL over Server-Sent Events), and so is the reference.
//
// loadgen shares the machine with the server it measures: its own CPU is in
// the report, and a latency histogram with 100 µs buckets keeps its memory
// independent of the number of deliveries. The RSS per connection is the
// growth of the server's RSS while connecting, so measure a freshly started
// server: one that already grew its heap in an earlier run reports too little.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand; `run` is the default.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runLoad(ctx, args, stdout, stderr)
	case "baseline":
		return runBaseline(ctx, args, stdout, stderr)
	case "notifications":
		return runNotifications(ctx, args, stdout, stderr)
	case "room":
		return runRoom(ctx, args, stdout, stderr)
	case "storm":
		return runStorm(ctx, args, stdout, stderr)
	case "dashboard":
		return runDashboard(ctx, args, stdout, stderr)
	case "writes":
		return runWrites(ctx, args, stdout, stderr)
	default:
		return fmt.Errorf("unknown subcommand %q: want run, notifications, room, storm, dashboard, writes or baseline", cmd)
	}
}
