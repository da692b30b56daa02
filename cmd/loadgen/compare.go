package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"time"
)

// runLoad is the `run` subcommand.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRunFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	rep, err := measure(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.compare {
		if rep.Baseline, err = measureBaseline(ctx, cfg, stderr); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}
	return writeReport(stdout, rep, cfg.json)
}

var listeningRE = regexp.MustCompile(`listening on (\S+)`)

// measureBaseline starts `loadgen baseline` as a child process on a free
// loopback port, measures it with cfg (its PID in place of -pid) and stops
// it.
func measureBaseline(ctx context.Context, cfg *config, progress io.Writer) (*Report, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "baseline", "-addr", "127.0.0.1:0")
	cmd.Stderr = progress
	first := &firstLine{c: make(chan string, 1)}
	cmd.Stdout = first
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var line string
	select {
	case line = <-first.c:
	case <-time.After(10 * time.Second):
		return nil, errors.New("it did not say where it listens within 10 s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	m := listeningRE.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("unexpected first line %q", line)
	}
	c := *cfg
	c.url, c.pid, c.token = "http://"+m[1], cmd.Process.Pid, ""
	fmt.Fprintf(progress, "baseline pid %d on %s\n", c.pid, m[1])
	return measure(ctx, &c, progress)
}

// firstLine is a child's stdout: it passes on the first line written and
// discards the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	c    chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sent {
		f.buf = append(f.buf, p...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.c <- string(f.buf[:i])
			f.sent, f.buf = true, nil
		}
	}
	return len(p), nil
}
