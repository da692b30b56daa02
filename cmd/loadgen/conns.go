package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The pieces the workloads with their own clients (notifications,
// dashboard) share: opening many connections, reading each, closing them
// all, and printing the report.

// connectEach calls connect for 0..n-1, concurrency at a time, and returns
// what succeeded; each failure is logged to errs and left out. It fails
// only when nothing connected or ctx ended.
func connectEach[C any](ctx context.Context, n, concurrency int, errs *errorLog, connect func(ctx context.Context, i int) (C, error)) ([]C, error) {
	sem := make(chan struct{}, concurrency)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out []C
	)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := connect(ctx, i)
			if err != nil {
				errs.add("connect: " + err.Error())
				return
			}
			mu.Lock()
			out = append(out, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing connected: %s", strings.Join(errs.list(), "; "))
	}
	return out, ctx.Err()
}

// readMessages hands each message of ws to handle until the connection
// fails or is closed, and reports whether it was lost (rather than closed
// by loadgen); a loss is logged to errs. msg is read into one buffer per
// connection, as the status feed's clients do (readLoop): handle must not
// keep it.
func readMessages(ws *websocket.Conn, errs *errorLog, handle func(msg []byte, now time.Time)) (lost bool) {
	var msg []byte
	for {
		_, r, err := ws.NextReader()
		if err == nil {
			msg, err = readAll(msg[:0], r)
		}
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) && !strings.Contains(err.Error(), "use of closed") {
				errs.add("connection lost: " + err.Error())
				return true
			}
			return false
		}
		handle(msg, time.Now())
	}
}

// closeAll closes each item's connection (a close frame, then the socket)
// and then waits for each one's read loop to be done.
func closeAll[T any](items []T, conn func(T) (ws *websocket.Conn, done <-chan struct{})) {
	for _, it := range items {
		ws, _ := conn(it)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = ws.Close()
	}
	for _, it := range items {
		_, done := conn(it)
		<-done
	}
}

// checkFlags returns the error listing problems, the flag set's leftover
// arguments and the bad values of the flags every workload has.
func checkFlags(fs *flag.FlagSet, dialConcurrency, sources int, problems ...string) error {
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments: %q", fs.Args()))
	}
	if dialConcurrency < 1 || sources < 1 || sources > 254 {
		problems = append(problems, "-dial-concurrency must be at least 1 and -sources 1..254")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// workload is a subcommand measured against a status feed reference: its
// flags (C) and report (R).
type workload[C, R any] struct {
	parse     func(args []string, stderr io.Writer) (C, error)
	measure   func(ctx context.Context, cfg C, progress io.Writer) (R, error)
	reference func(ctx context.Context, cfg C, rep R, progress io.Writer) error
	table     func(out io.Writer, rep R)
}

// run parses args, measures, adds the reference when asked (-reference)
// and prints the report, as JSON with -json.
func (w workload[C, R]) run(ctx context.Context, args []string, stdout, stderr io.Writer, flags func(C) (reference, asJSON bool)) error {
	cfg, err := w.parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	rep, err := w.measure(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	reference, asJSON := flags(cfg)
	if reference {
		if err := w.reference(ctx, cfg, rep, stderr); err != nil {
			return fmt.Errorf("status feed reference: %w", err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	w.table(stdout, rep)
	return nil
}
