package chat

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEachScopeAllocatesOnce: the audience of a room's change (every
// watcher who sees it alike) is named in a couple of allocations, not one
// string per user, and each scope is the user's id in decimal, in order.
func TestEachScopeAllocatesOnce(t *testing.T) {
	users := make([]int64, 8000)
	for i := range users {
		users[i] = int64(i*37 + 5)
	}
	var got []string
	eachScope(users, func(scope string) { got = append(got, scope) })
	assert.Len(t, got, len(users))
	for i, u := range users {
		if got[i] != strconv.FormatInt(u, 10) {
			assert.Equal(t, strconv.FormatInt(u, 10), got[i], "user %d", i)
			break
		}
	}
	assert.LessOrEqual(t, testing.AllocsPerRun(10, func() { eachScope(users, func(string) {}) }), 3.0)
}
