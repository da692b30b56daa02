package gqlws

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTurnsPutEventsFirst: while a turn runs, waiting events go before
// waiting latest values, each class in the order it asked; a waiter whose
// context ends leaves the queue and loses nothing for the others.
func TestTurnsPutEventsFirst(t *testing.T) {
	var tr turns
	ctx := context.Background()
	require.NoError(t, tr.acquire(ctx, eventTurn))
	order := make(chan string, 4)
	wait := func(name string, class int) {
		go func() {
			if tr.acquire(ctx, class) == nil {
				order <- name
				tr.release()
			}
		}()
		time.Sleep(20 * time.Millisecond) // queued in this order
	}
	wait("count 1", latestTurn)
	wait("message 1", eventTurn)
	gone, leave := context.WithCancel(ctx)
	go func() {
		if tr.acquire(gone, eventTurn) == nil {
			order <- "gone, yet it ran"
			tr.release()
			return
		}
		order <- "gone"
	}()
	time.Sleep(20 * time.Millisecond)
	wait("count 2", latestTurn)
	wait("message 2", eventTurn)
	leave()
	assert.Equal(t, "gone", <-order)
	tr.release()
	var got []string
	for range 4 {
		select {
		case name := <-order:
			got = append(got, name)
		case <-time.After(5 * time.Second):
			t.Fatalf("stuck after %v", got)
		}
	}
	assert.Equal(t, []string{"message 1", "message 2", "count 1", "count 2"}, got)
	require.NoError(t, tr.acquire(ctx, latestTurn), "free again")
}

// TestTurnsLetALatestValueGoUnderSteadyEvents: a latest value waiting while
// events keep coming gets its turn after maxPassed of them, not never.
func TestTurnsLetALatestValueGoUnderSteadyEvents(t *testing.T) {
	var tr turns
	ctx := context.Background()
	require.NoError(t, tr.acquire(ctx, eventTurn))
	order := make(chan string, 3*maxPassed)
	wait := func(name string, class int) {
		go func() {
			if tr.acquire(ctx, class) == nil {
				order <- name
				tr.release()
			}
		}()
		time.Sleep(20 * time.Millisecond) // queued in this order
	}
	wait("count", latestTurn)
	for i := range 2 * maxPassed {
		wait(fmt.Sprint("event ", i), eventTurn)
	}
	tr.release()
	var got []string
	for range 2*maxPassed + 1 {
		select {
		case name := <-order:
			got = append(got, name)
		case <-time.After(5 * time.Second):
			t.Fatalf("stuck after %v", got)
		}
	}
	assert.Equal(t, "count", got[maxPassed], "after %d events: %v", maxPassed, got)
}
