package batch_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/batch"
)

// TestLoadsAskedTogetherAreFetchedOnce: loads within the wait share one
// fetch, each gets its own key's value, and a load asked after the fetch
// began gets a fetch of its own (fresh, never the earlier read).
func TestLoadsAskedTogetherAreFetchedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var fetches [][]int
		version := 1
		l := batch.New(5*time.Millisecond, time.Second, func(_ context.Context, keys []int) (map[int]int, error) {
			mu.Lock()
			defer mu.Unlock()
			k := slices.Sorted(slices.Values(keys))
			fetches = append(fetches, k)
			out := map[int]int{}
			for _, key := range keys {
				if key != 0 { // 0 has no value
					out[key] = key*10 + version
				}
			}
			return out, nil
		})
		var wg sync.WaitGroup
		got := make([]int, 4)
		found := make([]bool, 4)
		for i := range 4 {
			wg.Go(func() {
				v, ok, err := l.Load(t.Context(), i%3) // 0, 1, 2, 0
				assert.NoError(t, err)
				got[i], found[i] = v, ok
			})
		}
		wg.Wait()
		assert.Equal(t, [][]int{{0, 1, 2}}, fetches, "one fetch, each key once")
		assert.Equal(t, []int{0, 11, 21, 0}, got)
		assert.Equal(t, []bool{false, true, true, false}, found)

		mu.Lock()
		version = 2 // the data changed; a later load must see it
		mu.Unlock()
		v, _, err := l.Load(t.Context(), 1)
		require.NoError(t, err)
		assert.Equal(t, 12, v, "a new fetch, not the earlier value")
		assert.Len(t, fetches, 2)
	})
}

// TestLoadErrorsAndCancellation: a fetch's error reaches every load of the
// batch; a caller whose context ends stops waiting, without ending the
// fetch for the others.
func TestLoadErrorsAndCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("database down")
		l := batch.New(5*time.Millisecond, time.Second, func(ctx context.Context, keys []string) (map[string]int, error) {
			time.Sleep(10 * time.Millisecond)
			return nil, boom
		})
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _, err := l.Load(ctx, "a")
			assert.ErrorIs(t, err, context.Canceled)
		})
		wg.Go(func() {
			_, _, err := l.Load(t.Context(), "b")
			assert.ErrorIs(t, err, boom)
		})
		synctest.Wait()
		cancel()
		wg.Wait()
	})
}
