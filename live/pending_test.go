package live_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/live"
)

// TestPendingMergesByKey: changes of a key not taken yet merge into one
// entry, keys come out in the order they first changed, a signal waits for
// the reader, and a take empties the queue.
func TestPendingMergesByKey(t *testing.T) {
	p := live.NewPending[string, int]()
	add := func(k string, n int) { p.Update(k, func(old int, _ bool) int { return old + n }) }
	add("b", 1)
	add("a", 2)
	add("b", 3)
	select {
	case <-p.C():
	default:
		t.Fatal("no signal after updates")
	}
	order, values := p.Take()
	assert.Equal(t, []string{"b", "a"}, order)
	assert.Equal(t, map[string]int{"b": 4, "a": 2}, values)
	order, values = p.Take()
	assert.Empty(t, order)
	assert.Empty(t, values)

	// The memory of a take is reused two takes later, holding only what
	// came since.
	add("c", 5)
	order, values = p.Take()
	assert.Equal(t, []string{"c"}, order)
	assert.Equal(t, map[string]int{"c": 5}, values)
	add("a", 1)
	add("c", 1)
	order, values = p.Take()
	assert.Equal(t, []string{"a", "c"}, order)
	assert.Equal(t, map[string]int{"a": 1, "c": 1}, values)
}

// TestPendingReusesItsMemory: once warm, a round of a change to each of
// many keys and a take allocates nothing, so a queue that takes a change
// of every inbox on each broadcast adds no garbage per inbox.
func TestPendingReusesItsMemory(t *testing.T) {
	p := live.NewPending[int64, int]()
	round := func() {
		for k := range int64(1000) {
			p.Update(k, func(old int, _ bool) int { return old + 1 })
		}
		p.Take()
	}
	round()
	round()
	assert.Zero(t, testing.AllocsPerRun(20, round))
}

// TestGroupBy: keys of one group value come together, groups in the order
// of their first key, and keys the function leaves out are in none.
func TestGroupBy(t *testing.T) {
	count := map[int]int{1: 5, 2: 6, 3: 5, 4: -1, 5: 6}
	got := live.GroupBy([]int{1, 2, 3, 4, 5}, func(u int) (int, bool) { return count[u], count[u] >= 0 })
	assert.Equal(t, [][]int{{1, 3}, {2, 5}}, got)
}

// TestGroupByAllocatesEachGroupOnce: grouping the readers of a room's
// change (8,000 of them, most seeing it alike) allocates a few arrays of
// their exact size, not a growing slice per group.
func TestGroupByAllocatesEachGroupOnce(t *testing.T) {
	keys := make([]int64, 8000)
	for i := range keys {
		keys[i] = int64(i)
	}
	view := func(u int64) (bool, bool) { return u%100 == 0, u%1000 != 1 }
	got := live.GroupBy(keys, view)
	require.Len(t, got, 2)
	assert.Len(t, got[0], 80)        // 0, 100, 200, …
	assert.Len(t, got[1], 8000-80-8) // the others but 1, 1001, 2001, …, left out
	assert.Equal(t, []int64{2, 3, 4}, got[1][:3], "the order of the keys")
	assert.LessOrEqual(t, testing.AllocsPerRun(10, func() { live.GroupBy(keys, view) }), 6.0)
}
