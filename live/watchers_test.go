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
