package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one measurement, printed as a table or (with
// -json) as one JSON object. Figures that could not be measured (no -pid,
// no go_goroutines in /metrics, no idle window, no ramp) are null.
type Report struct {
	Target        string        `json:"target"`
	Proto         string        `json:"proto"`
	Conns         int           `json:"conns"`
	Connected     int           `json:"connected"`
	ConnectErrors int           `json:"connectErrors"`
	Connect       ConnectReport `json:"connect"`
	RunID         string        `json:"runId"`
	After         string        `json:"after"` // the subscriptions' after argument

	Posts       int64   `json:"posts"` // successful posts
	PostErrors  int64   `json:"postErrors"`
	PostsLate   int64   `json:"postsLate"` // started more than one interval after they were due
	PostLatency Latency `json:"postLatency"`

	DeliveriesExpected int64   `json:"deliveriesExpected"` // posts × connected
	DeliveriesReceived int64   `json:"deliveriesReceived"` // first deliveries of loadgen's posts
	Missing            int64   `json:"missing"`
	Duplicates         int64   `json:"duplicates"`
	OutOfOrder         int64   `json:"outOfOrder"`
	Foreign            int64   `json:"foreign"`    // statuses posted by someone else
	Unexpected         int64   `json:"unexpected"` // this run's, numbered beyond the plan
	Disconnects        int64   `json:"disconnects"`
	SubscriptionErrors int64   `json:"subscriptionErrors"`
	WindowSeconds      float64 `json:"windowSeconds"` // first post → last post or delivery, whichever is later
	DeliveriesPerSec   float64 `json:"deliveriesPerSec"`
	Latency            Latency `json:"latency"` // publish → receive

	Server  ServerReport  `json:"server"`
	Loadgen LoadgenReport `json:"loadgen"`
	Idle    *IdleReport   `json:"idle"`
	Ramp    *RampReport   `json:"ramp"`
	Errors  []string      `json:"errors"`

	// Baseline is the same measurement of `loadgen baseline` (-compare).
	Baseline *Report `json:"baseline,omitempty"`
}

// ConnectReport is how long connecting, initialising and subscribing took.
type ConnectReport struct {
	TotalMs          float64  `json:"totalMs"` // wall time for all connections
	P50Ms            float64  `json:"p50Ms"`   // per connection
	P99Ms            float64  `json:"p99Ms"`
	MaxMs            float64  `json:"maxMs"`
	ServerCPUPercent *float64 `json:"serverCpuPercent"`
}

// ServerReport is what /proc and /metrics say about the server.
type ServerReport struct {
	PID                  int      `json:"pid"`
	RSSBeforeKiB         *int64   `json:"rssBeforeKiB"`
	RSSSubscribedKiB     *int64   `json:"rssSubscribedKiB"`
	RSSEndKiB            *int64   `json:"rssEndKiB"`
	RSSPerConnKiB        *float64 `json:"rssPerConnKiB"` // (subscribed − before) / connected
	CPUPercent           *float64 `json:"cpuPercent"`    // of one core, over the posting window
	CPUSeconds           *float64 `json:"cpuSeconds"`    // the same window's CPU time
	GoroutinesBefore     *int64   `json:"goroutinesBefore"`
	GoroutinesSubscribed *int64   `json:"goroutinesSubscribed"`
	GoroutinesEnd        *int64   `json:"goroutinesEnd"`
	GoroutinesPerConn    *float64 `json:"goroutinesPerConn"`

	// RSSAfterEventsKiB is read once every subscriber has received
	// -rss-after posts; per connection it is that minus RSSBeforeKiB.
	RSSAfterEventsKiB        *int64   `json:"rssAfterEventsKiB"`
	RSSPerConnAfterEventsKiB *float64 `json:"rssPerConnAfterEventsKiB"`
	// GoroutinesMax is the most goroutines sampled (every 200 ms) from
	// before connecting to the end of posting; per connection it is that
	// minus GoroutinesBefore.
	GoroutinesMax        *int64   `json:"goroutinesMax"`
	GoroutinesMaxPerConn *float64 `json:"goroutinesMaxPerConn"`
}

// LoadgenReport is loadgen's own cost, which shares the machine.
type LoadgenReport struct {
	CPUPercent float64 `json:"cpuPercent"` // of one core, over the posting window
	RSSKiB     *int64  `json:"rssKiB"`     // at the end of the posting window
}

// IdleReport is the idle window after subscribing (-idle).
type IdleReport struct {
	Seconds           float64  `json:"seconds"`
	ServerCPUPercent  *float64 `json:"serverCpuPercent"`
	LoadgenCPUPercent float64  `json:"loadgenCpuPercent"`
	RSSStartKiB       *int64   `json:"rssStartKiB"`
	RSSEndKiB         *int64   `json:"rssEndKiB"`
	Goroutines        *int64   `json:"goroutines"`
}

// RampReport is the ramp's steps and its headline figure.
type RampReport struct {
	MaxP99Ms                         float64      `json:"maxP99Ms"`
	Steps                            []StepReport `json:"steps"`
	HighestSustainedRate             float64      `json:"highestSustainedRate"` // posts/s; 0 when no step passed
	HighestSustainedDeliveriesPerSec float64      `json:"highestSustainedDeliveriesPerSec"`
	StopReason                       string       `json:"stopReason"` // empty when every step passed
}

// StepReport is one step of posting, as it stood after its drain.
type StepReport struct {
	Rate             float64  `json:"rate"`     // target posts/s
	PostRate         float64  `json:"postRate"` // achieved posts/s
	Posts            int64    `json:"posts"`
	PostErrors       int64    `json:"postErrors"`
	PostsLate        int64    `json:"postsLate"`
	Expected         int64    `json:"expected"`
	Received         int64    `json:"received"`
	Missing          int64    `json:"missing"`
	Duplicates       int64    `json:"duplicates"`
	DeliveriesPerSec float64  `json:"deliveriesPerSec"` // received ÷ (first post → last post or delivery)
	Latency          Latency  `json:"latency"`
	ServerCPUPercent *float64 `json:"serverCpuPercent"`
	LoadgenCPU       float64  `json:"loadgenCpuPercent"`
	OK               bool     `json:"ok"`
	Reason           string   `json:"reason,omitempty"`

	start, end time.Time
}

// writeReport prints rep as JSON or as a table.
func writeReport(w io.Writer, rep *Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeTable(w, rep)
	if rep.Baseline != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "── baseline (loadgen baseline: encode once, gorilla/websocket) ──")
		writeTable(w, rep.Baseline)
		fmt.Fprintln(w)
		writeComparison(w, rep, rep.Baseline)
	}
	return nil
}

func writeTable(out io.Writer, r *Report) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("target", "%s (%s, run %s)", r.Target, r.Proto, r.RunID)
	row("connections", "%d of %d subscribed, %d failed", r.Connected, r.Conns, r.ConnectErrors)
	row("connect+init+subscribe", "%s total; per connection p50 %s, p99 %s, max %s; server CPU %s",
		msStr(r.Connect.TotalMs), msStr(r.Connect.P50Ms), msStr(r.Connect.P99Ms), msStr(r.Connect.MaxMs), pct(r.Connect.ServerCPUPercent))
	row("posts", "%d ok, %d failed, %d late; mutation p50 %s, p99 %s", r.Posts, r.PostErrors, r.PostsLate, msStr(r.PostLatency.P50Ms), msStr(r.PostLatency.P99Ms))
	row("deliveries", "%d of %d; missing %d, duplicates %d, out of order %d, disconnects %d, subscription errors %d",
		r.DeliveriesReceived, r.DeliveriesExpected, r.Missing, r.Duplicates, r.OutOfOrder, r.Disconnects, r.SubscriptionErrors)
	if r.Foreign+r.Unexpected > 0 {
		row("", "also %d statuses from others, %d beyond the plan", r.Foreign, r.Unexpected)
	}
	row("throughput", "%.0f deliveries/s over %.2f s", r.DeliveriesPerSec, r.WindowSeconds)
	row("latency publish→receive", "p50 %s, p90 %s, p99 %s, max %s", msStr(r.Latency.P50Ms), msStr(r.Latency.P90Ms), msStr(r.Latency.P99Ms), msStr(r.Latency.MaxMs))
	s := r.Server
	if s.PID > 0 {
		row(fmt.Sprintf("server pid %d RSS", s.PID), "%s before, %s subscribed, %s end; %s KiB per connection",
			kib(s.RSSBeforeKiB), kib(s.RSSSubscribedKiB), kib(s.RSSEndKiB), num(s.RSSPerConnKiB))
		if s.RSSAfterEventsKiB != nil {
			row("server RSS after events", "%s once every subscriber had the first posts; %s KiB per connection", kib(s.RSSAfterEventsKiB), num(s.RSSPerConnAfterEventsKiB))
		}
		row("server CPU", "%s of a core while posting", pct(s.CPUPercent))
	}
	if s.GoroutinesBefore != nil {
		row("server goroutines", "%s before, %s subscribed, %s end; %s per connection",
			intStr(s.GoroutinesBefore), intStr(s.GoroutinesSubscribed), intStr(s.GoroutinesEnd), num(s.GoroutinesPerConn))
		row("", "at most %s sampled throughout; %s per connection", intStr(s.GoroutinesMax), num(s.GoroutinesMaxPerConn))
	}
	row("loadgen", "CPU %.1f%% of a core while posting, RSS %s", r.Loadgen.CPUPercent, kib(r.Loadgen.RSSKiB))
	if i := r.Idle; i != nil {
		row(fmt.Sprintf("idle %.0f s", i.Seconds), "server CPU %s, RSS %s → %s, goroutines %s; loadgen CPU %.2f%%",
			pct(i.ServerCPUPercent), kib(i.RSSStartKiB), kib(i.RSSEndKiB), intStr(i.Goroutines), i.LoadgenCPUPercent)
	}
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	_ = w.Flush()
	if r.Ramp != nil {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "rate/s\tposted/s\tposts\tdeliveries\tmissing\tdup\tdeliveries/s\tp50 ms\tp99 ms\tmax ms\tserver CPU\tloadgen CPU\tresult\t")
		for _, st := range r.Ramp.Steps {
			verdict := "ok"
			if !st.OK {
				verdict = "FAIL: " + st.Reason
			}
			fmt.Fprintf(w, "%g\t%.1f\t%d\t%d/%d\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%s\t%.0f%%\t %s\t\n",
				st.Rate, st.PostRate, st.Posts, st.Received, st.Expected, st.Missing, st.Duplicates, st.DeliveriesPerSec,
				st.Latency.P50Ms, st.Latency.P99Ms, st.Latency.MaxMs, pct(st.ServerCPUPercent), st.LoadgenCPU, verdict)
		}
		_ = w.Flush()
		fmt.Fprintf(out, "highest sustained (p99 ≤ %s, no loss): %.0f deliveries/s at %g posts/s\n",
			msStr(r.Ramp.MaxP99Ms), r.Ramp.HighestSustainedDeliveriesPerSec, r.Ramp.HighestSustainedRate)
		if r.Ramp.StopReason != "" {
			fmt.Fprintln(out, r.Ramp.StopReason)
		}
	}
}

// writeComparison puts the headline figures of a server and the baseline
// side by side.
func writeComparison(out io.Writer, r, b *Report) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\t%s\tbaseline\n", r.Target)
	line := func(k, a, b string) { fmt.Fprintf(w, "%s\t%s\t%s\n", k, a, b) }
	line("connect total", msStr(r.Connect.TotalMs), msStr(b.Connect.TotalMs))
	line("latency p50 / p99", msStr(r.Latency.P50Ms)+" / "+msStr(r.Latency.P99Ms), msStr(b.Latency.P50Ms)+" / "+msStr(b.Latency.P99Ms))
	line("deliveries/s", fmt.Sprintf("%.0f", r.DeliveriesPerSec), fmt.Sprintf("%.0f", b.DeliveriesPerSec))
	line("missing / duplicates", fmt.Sprintf("%d / %d", r.Missing, r.Duplicates), fmt.Sprintf("%d / %d", b.Missing, b.Duplicates))
	line("RSS per connection", num(r.Server.RSSPerConnKiB)+" KiB", num(b.Server.RSSPerConnKiB)+" KiB")
	line("goroutines per connection", num(r.Server.GoroutinesPerConn), num(b.Server.GoroutinesPerConn))
	line("RSS per connection after events", num(r.Server.RSSPerConnAfterEventsKiB)+" KiB", num(b.Server.RSSPerConnAfterEventsKiB)+" KiB"+ratio(r.Server.RSSPerConnAfterEventsKiB, b.Server.RSSPerConnAfterEventsKiB))
	line("goroutines per connection, most sampled", num(r.Server.GoroutinesMaxPerConn), num(b.Server.GoroutinesMaxPerConn))
	line("server CPU while posting", pct(r.Server.CPUPercent), pct(b.Server.CPUPercent))
	if r.Ramp != nil && b.Ramp != nil {
		line("highest sustained deliveries/s", fmt.Sprintf("%.0f", r.Ramp.HighestSustainedDeliveriesPerSec), fmt.Sprintf("%.0f", b.Ramp.HighestSustainedDeliveriesPerSec))
	}
	_ = w.Flush()
}

// ratio is "  (a÷b = x)" when both are known and b is positive, else "".
func ratio(a, b *float64) string {
	if a == nil || b == nil || *b <= 0 {
		return ""
	}
	return fmt.Sprintf("  (ratio %.2f)", *a / *b)
}

func msStr(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func pct(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", *v)
}

func kib(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(*v)/1024)
}

func num(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", *v), "0"), ".")
}

func intStr(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprint(*v)
}
