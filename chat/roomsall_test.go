package chat_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
)

// TestSharedRoomListWatcherStartsWithTheRecentChanges: a change made after
// a subscriber's own watcher stopped (its list held) and before the shared
// watcher it joins started reaches that shared watcher; each distinct view
// of a room goes out once, with its users as the audience.
func TestSharedRoomListWatcherStartsWithTheRecentChanges(t *testing.T) {
	e := chat.NewRoomEvents()
	life, leave := context.WithCancel(t.Context())
	defer leave()
	e.Hold(life, 7)
	e.Hold(life, 8)
	e.Changed(42) // in the gap: nobody watches yet

	var audience []string
	var positions []int64
	load := func(_ context.Context, roomID int64, users []int64) (map[int64]*models.Room, error) {
		out := map[int64]*models.Room{}
		for _, u := range users {
			out[u] = &models.Room{ID: roomID, Seen: &models.RoomSeen{UnreadCount: 1, Viewer: u}}
		}
		return out, nil
	}
	rooms := e.WatchAll(t.Context(), load, chat.Positions{
		Sent:     func(p int64) { positions = append(positions, p) },
		CaughtUp: func(int64) {},
		Audience: func(u string) { audience = append(audience, u) },
	})
	select {
	case r := <-rooms:
		assert.Equal(t, int64(42), r.ID)
	case <-time.After(5 * time.Second):
		require.Fail(t, "the change made in the gap never came")
	}
	assert.ElementsMatch(t, []string{"7", "8"}, audience, "one view, for both users")
	assert.Equal(t, []int64{1}, positions)
}

// TestHeldListIsLetGo: a held list is followed while its subscriber lives,
// and let go once its life ends: changes then reach no shared watcher.
func TestHeldListIsLetGo(t *testing.T) {
	e := chat.NewRoomEvents()
	load := func(_ context.Context, roomID int64, users []int64) (map[int64]*models.Room, error) {
		out := map[int64]*models.Room{}
		for _, u := range users {
			out[u] = &models.Room{ID: roomID, Seen: &models.RoomSeen{Viewer: u}}
		}
		return out, nil
	}
	rooms := e.WatchAll(t.Context(), load, chat.Positions{Sent: func(int64) {}, CaughtUp: func(int64) {}, Audience: func(string) {}})
	life, leave := context.WithCancel(t.Context())
	e.Hold(life, 7)
	e.Changed(41)
	select {
	case r := <-rooms:
		assert.Equal(t, int64(41), r.ID, "followed while held")
	case <-time.After(5 * time.Second):
		require.Fail(t, "a held list was not followed")
	}
	leave() // its hold ends moments later
	quiet := func() bool {
		e.Changed(42)
		select {
		case <-rooms:
			return false
		case <-time.After(50 * time.Millisecond):
			return true
		}
	}
	require.Eventually(t, quiet, 5*time.Second, time.Millisecond, "let go")
	for range 5 {
		assert.True(t, quiet(), "and stays let go")
	}
}
