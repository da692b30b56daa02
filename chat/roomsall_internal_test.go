package chat

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
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

// TestAllWatcherQueuesAChangesUsersAsIs: a change queued for the watcher
// of every list keeps the users it names as they are, without a set or a
// copy per change (8,000 users of a busy room's message cost a map and a
// sort per message before); changes that pile up while the watcher is
// behind are merged, each user once, and leave the slices they came with
// alone (a change's users are shared with its other readers).
func TestAllWatcherQueuesAChangesUsersAsIs(t *testing.T) {
	a := &allWatcher{pending: live.NewPending[int64, []int64]()}
	first := []int64{7, 3, 9}
	a.changed(42, first)
	_, pending := a.pending.Take()
	assert.Same(t, &first[0], &pending[42][0], "the change's own slice")

	a.changed(42, first)
	a.changed(42, []int64{9, 5})
	a.changed(43, []int64{1})
	order, pending := a.pending.Take()
	assert.Equal(t, []int64{42, 43}, order)
	assert.ElementsMatch(t, []int64{7, 3, 9, 5}, pending[42], "each user once")
	assert.Equal(t, []int64{7, 3, 9}, first, "left alone")
}

// TestSharedListsMakeNoGenerationPerUser: a change of a room whose
// watchers are served by the watcher of every list (their subscriptions
// share one delivery) names to the reads of watchers of their own only
// those users who have one: the others' entries are read by the watcher
// of every list, once for all (Service.readAll), without a generation of
// roomReads holding every member.
func TestSharedListsMakeNoGenerationPerUser(t *testing.T) {
	e := NewRoomEvents()
	var heard [][]int64
	e.onChange = func(_ int64, users []int64) { heard = append(heard, users) }
	for u := int64(2); u <= 1000; u++ {
		e.Hold(t.Context(), u)
	}
	e.Changed(42)
	assert.Empty(t, heard, "no user has a watcher of their own")

	e.Watch(t.Context(), 1, func(context.Context, int64) (*models.Room, error) {
		return nil, models.Errorf(models.NotFound, "room not found")
	})
	e.Changed(42)
	e.Changed(43, 1, 2, 3)
	assert.Equal(t, [][]int64{{1}, {1}}, heard, "only the user with a watcher of their own")
}
