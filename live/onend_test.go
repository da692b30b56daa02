package live_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/live"
)

// ender is a context that runs OnEnd's functions itself.
type ender struct {
	context.Context
	fs []func()
}

func (e *ender) OnEnd(f func()) { e.fs = append(e.fs, f) }

// TestOnEnd: a function is handed to a context that runs it itself (an
// Ender), and runs after any other context's end, as context.AfterFunc's.
func TestOnEnd(t *testing.T) {
	e := &ender{Context: context.Background()}
	live.OnEnd(e, func() {})
	assert.Len(t, e.fs, 1, "the Ender keeps it")

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	live.OnEnd(ctx, func() { close(ran) })
	select {
	case <-ran:
		t.Fatal("ran before the end")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("did not run after the end")
	}
}
