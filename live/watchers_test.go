package live_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/live"
)

// TestWatchersKeepAValueForAHandover: a watcher that starts right after
// its key's last watcher left gets the kept value without a read (the
// same value under the same version: a subscriber handing over to a
// shared watcher gets nothing twice), unless the key changed meanwhile or
// the value was kept longer than a moment.
func TestWatchersKeepAValueForAHandover(t *testing.T) {
	var ws live.Watchers[string, int]
	var reads atomic.Int64
	value := atomic.Int64{}
	value.Store(1)
	read := func() (int, error) {
		reads.Add(1)
		return int(value.Load()), nil
	}
	watch := func() (int, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		ch, err := ws.Watch(ctx, "hr", read)
		require.NoError(t, err)
		select {
		case v := <-ch:
			return v, cancel
		case <-time.After(5 * time.Second):
			t.Fatal("no first value")
		}
		return 0, cancel
	}
	leave := func(cancel context.CancelFunc) {
		t.Helper()
		cancel()
		require.Eventually(t, func() bool { return ws.Len("hr") == 0 }, 5*time.Second, time.Millisecond)
	}

	v, cancel := watch()
	assert.Equal(t, 1, v)
	assert.EqualValues(t, 1, reads.Load())
	leave(cancel)
	v, cancel = watch()
	assert.Equal(t, 1, v)
	assert.EqualValues(t, 1, reads.Load(), "a watcher right after the last one left reads nothing")
	leave(cancel)

	value.Store(2)
	require.NoError(t, ws.Refresh("hr", read)) // no watcher: reads nothing, forgets the kept value
	assert.EqualValues(t, 1, reads.Load())
	v, cancel = watch()
	assert.Equal(t, 2, v, "a change while nobody watched is read")
	assert.EqualValues(t, 2, reads.Load())
	leave(cancel)

	time.Sleep(1100 * time.Millisecond)
	v, cancel = watch()
	defer cancel()
	assert.Equal(t, 2, v)
	assert.EqualValues(t, 3, reads.Load(), "a value kept over a second is read again")
}

// TestWatchersSendAStateOnce: two refreshes that read the same state (two
// changes close together, whose refreshes both ran after the second) send
// it once; the next state that differs goes out under a newer version.
func TestWatchersSendAStateOnce(t *testing.T) {
	var ws live.Watchers[string, []int]
	var state atomic.Int64
	read := func() ([]int, error) { return []int{int(state.Load())}, nil } // a new slice per read, as a database read makes
	var versions []int64
	ch, err := ws.Watch(live.WithVersionRecorder(t.Context(), func(v int64) { versions = append(versions, v) }), "hr", read)
	require.NoError(t, err)
	next := func() []int {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(5 * time.Second):
			t.Fatal("no value")
			return nil
		}
	}
	assert.Equal(t, []int{0}, next())

	state.Store(2) // changes 1 and 2 committed; both refreshes read 2
	require.NoError(t, ws.Refresh("hr", read))
	assert.Equal(t, []int{2}, next())
	require.NoError(t, ws.Refresh("hr", read))
	require.NoError(t, ws.RefreshAll(func([]string) (map[string][]int, error) {
		v, _ := read()
		return map[string][]int{"hr": v}, nil
	}))
	select {
	case v := <-ch:
		t.Fatalf("the same state again: %v", v)
	case <-time.After(50 * time.Millisecond):
	}
	state.Store(3)
	require.NoError(t, ws.Refresh("hr", read))
	assert.Equal(t, []int{3}, next())
	require.Len(t, versions, 3)
	assert.Less(t, versions[1], versions[2], "a newer state, a newer version")
}
