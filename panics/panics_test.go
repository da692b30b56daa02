package panics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/request"
)

// recorded is a Guard that logs JSON to a buffer and counts by where.
type recorded struct {
	panics.Guard
	mu     sync.Mutex
	log    bytes.Buffer
	counts map[string]int
}

func newRecorded() *recorded {
	r := &recorded{counts: map[string]int{}}
	r.Log = slog.New(request.LogHandler(slog.NewJSONHandler(&lockedWriter{r}, nil)))
	r.Count = func(where string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.counts[where]++
	}
	return r
}

type lockedWriter struct{ r *recorded }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.log.Write(p)
}

// lines returns the log's lines, decoded.
func (r *recorded) lines(t *testing.T) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(r.log.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	return out
}

func TestDoRecoversLogsOnceAndCounts(t *testing.T) {
	g := newRecorded()
	ctx := request.WithID(context.Background(), "req-1")
	ran := false
	assert.True(t, g.Do(ctx, "test.place", func() { panic("boom") }), "reported")
	assert.False(t, g.Do(ctx, "test.place", func() { ran = true }), "no panic, nothing reported")
	assert.True(t, ran)

	lines := g.lines(t)
	require.Len(t, lines, 1, "one line per panic")
	l := lines[0]
	assert.Equal(t, "ERROR", l["level"])
	assert.Equal(t, "panic recovered", l["msg"])
	assert.Equal(t, "test.place", l["where"])
	assert.Equal(t, "boom", l["panic"])
	assert.Equal(t, "req-1", l["request_id"])
	assert.Contains(t, l["stack"], "panics_test.TestDoRecoversLogsOnceAndCounts", "the stack of the panic")
	assert.Equal(t, map[string]int{"test.place": 1}, g.counts)
}

func TestRecoverRunsThenOnlyAfterAPanic(t *testing.T) {
	g := newRecorded()
	var ended []string
	run := func(name string, fn func()) {
		defer g.Recover(context.Background(), name, func() { ended = append(ended, name) })
		fn()
	}
	run("calm", func() {})
	run("error", func() { panic(assert.AnError) })
	run("index", func() {
		var s []int
		_ = s[len(ended)]
	})
	assert.Equal(t, []string{"error", "index"}, ended)
	assert.Equal(t, map[string]int{"error": 1, "index": 1}, g.counts)
}

func TestGoEndsOnlyItsGoroutine(t *testing.T) {
	g := newRecorded()
	done := make(chan struct{})
	g.Go(context.Background(), "test.go", func() {
		defer close(done)
		g.Point("test.go") // nothing armed
		panic("in a goroutine")
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine did not run")
	}
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.counts["test.go"] == 1
	}, 10*time.Second, 5*time.Millisecond)
}

func TestPointInjects(t *testing.T) {
	g := newRecorded()
	var seen []string
	g.Inject = func(where string) {
		seen = append(seen, where)
		if where == "test.armed" {
			panic("injected")
		}
	}
	ran := 0
	assert.False(t, g.Do(context.Background(), "test.calm", func() { ran++ }))
	assert.True(t, g.Do(context.Background(), "test.armed", func() { ran++ }), "the injected panic is recovered")
	assert.Equal(t, 1, ran, "the armed place's work did not run")
	assert.Equal(t, []string{"test.calm", "test.armed"}, seen)
	assert.Equal(t, map[string]int{"test.armed": 1}, g.counts)
}

func TestNilGuardRecovers(t *testing.T) {
	var g *panics.Guard
	g.Point("nothing to inject")
	assert.True(t, g.Do(context.Background(), "test.nil", func() { panic("no guard") }))
}

func TestBackoff(t *testing.T) {
	var b panics.Backoff
	now := time.Now()
	var got []time.Duration
	for range 7 {
		d := b.Next(now)
		got = append(got, d)
		now = now.Add(d)
	}
	s := time.Second
	assert.Equal(t, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s}, got, "from 1 s, doubling, up to 30 s")
	assert.Equal(t, time.Second, b.Next(now.Add(2*panics.MaxBackoff)), "a loop that ran a while without a panic starts again from 1 s")
}
