package gqlws

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/live"
)

// TestSubscriberLifeEndsWhatItHolds: a subscription's lifetime is a
// context that ends with the operation: the functions given to live.OnEnd
// and context.AfterFunc run then (not those stopped), contexts made from it
// end with it without a goroutine each waiting, and one given after the
// end runs at once.
func TestSubscriberLifeEndsWhatItHolds(t *testing.T) {
	op := &operation{}
	life := op.lifetime()
	assert.Same(t, life, op.lifetime(), "one per operation")
	var ran atomic.Int32
	live.OnEnd(life, func() { ran.Add(1) })
	context.AfterFunc(life, func() { ran.Add(10) })
	stop := context.AfterFunc(life, func() { ran.Add(100) })
	assert.True(t, stop(), "stopped before the end")

	goroutines := runtime.NumGoroutine()
	children := make([]context.Context, 100)
	for i := range children {
		var cancel context.CancelFunc
		children[i], cancel = context.WithCancel(life)
		t.Cleanup(cancel)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "no goroutine per child")
	assert.NoError(t, life.Err())

	op.end()
	require.Eventually(t, func() bool { return ran.Load() == 11 }, 5*time.Second, time.Millisecond, "OnEnd's and AfterFunc's, not the stopped one")
	assert.ErrorIs(t, life.Err(), context.Canceled)
	<-life.Done()
	for _, c := range children {
		<-c.Done()
	}
	live.OnEnd(life, func() { ran.Add(1000) })
	require.Eventually(t, func() bool { return ran.Load() == 1011 }, 5*time.Second, time.Millisecond, "at once after the end")
}

// TestSubscriberLifeCostsLittle: what a subscription holds until it ends
// (three functions, as a chat subscriber's: being online, the room list
// followed, its counts) costs a few allocations on its lifetime, where a
// cancel context cost a context, a child in a map and a done channel.
func TestSubscriberLifeCostsLittle(t *testing.T) {
	f := func() {}
	ours := testing.AllocsPerRun(200, func() {
		life := &subscriberLife{}
		for range 3 {
			live.OnEnd(life, f)
		}
	})
	theirs := testing.AllocsPerRun(200, func() {
		life, cancel := context.WithCancel(context.Background())
		for range 3 {
			live.OnEnd(life, f)
		}
		cancel()
	})
	t.Logf("allocations: %.0f on a subscriber's lifetime, %.0f on a cancel context", ours, theirs)
	assert.LessOrEqual(t, ours, 4.0)
	assert.Less(t, 2*ours, theirs)
}
