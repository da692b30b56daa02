package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raiseNoFile raises the RLIMIT_NOFILE soft limit to the hard limit and
// returns the limit now in force.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// probe reads a server process's figures: RSS and CPU from /proc (when its
// PID is known) and goroutines from its Prometheus /metrics (when it has
// go_goroutines). Each method reports ok=false when the figure is
// unavailable.
type probe struct {
	pid        int
	metricsURL string
	client     *http.Client
}

// rssKiB returns VmRSS from /proc/PID/status.
func (p *probe) rssKiB() (int64, bool) {
	if p.pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// cpu returns the process's user+system CPU time so far.
func (p *probe) cpu() (time.Duration, bool) {
	if p.pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // f[0] is field 3 (state); utime and stime are fields 14 and 15
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / userHZ, true
}

// command returns the process's command name from /proc/PID/comm.
func (p *probe) command() (string, bool) {
	if p.pid <= 0 {
		return "", false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
	return strings.TrimSpace(string(b)), err == nil
}

// maxOpenFiles returns the process's RLIMIT_NOFILE soft limit from
// /proc/PID/limits.
func (p *probe) maxOpenFiles() (int64, bool) {
	if p.pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// goroutines scrapes go_goroutines from the server's /metrics.
func (p *probe) goroutines(ctx context.Context) (int64, bool) {
	n, ok := p.metric(ctx, "go_goroutines")
	return int64(n), ok
}

// metric scrapes the value of an unlabelled metric from the server's
// /metrics.
func (p *probe) metric(ctx context.Context, name string) (float64, bool) {
	if p.metricsURL == "" {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return 0, false
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return 0, false
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n, err == nil
		}
	}
	return 0, false
}

// selfCPU returns this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuWindow measures the CPU a process and loadgen itself use over a window
// of wall time.
type cpuWindow struct {
	p             *probe
	start         time.Time
	server        time.Duration
	serverOK      bool
	self          time.Duration
	seconds       float64
	serverPercent *float64
	selfPercent   float64
}

func startCPU(p *probe) *cpuWindow {
	w := &cpuWindow{p: p, start: time.Now(), self: selfCPU()}
	w.server, w.serverOK = p.cpu()
	return w
}

// stop ends the window and computes the percentages of one core.
func (w *cpuWindow) stop() *cpuWindow {
	wall := time.Since(w.start)
	w.seconds = wall.Seconds()
	if wall <= 0 {
		return w
	}
	w.selfPercent = round2(100 * float64(selfCPU()-w.self) / float64(wall))
	if end, ok := w.p.cpu(); ok && w.serverOK {
		v := round2(100 * float64(end-w.server) / float64(wall))
		w.serverPercent = &v
	}
	return w
}

// serverSeconds is the server's CPU time over the stopped window (nil when
// unknown).
func (w *cpuWindow) serverSeconds() *float64 {
	if w.serverPercent == nil {
		return nil
	}
	v := round2(*w.serverPercent / 100 * w.seconds)
	return &v
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
