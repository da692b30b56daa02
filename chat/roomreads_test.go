package chat_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// TestBusyRoomCostsNoStatementPerWatcher: a message in a public room that
// 200 users watch in their room lists is read once for all of them (the
// room, its last message, every unread count and joined flag in grouped
// queries): a few statements, where reading it per watcher cost three or
// more each. Each watcher still gets its own unread count, and the count
// ends right while watchers read and messages keep coming.
func TestBusyRoomCostsNoStatementPerWatcher(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		const watchers = 200
		users := make([]*models.User, watchers)
		lists := make([]<-chan *models.Room, watchers)
		for i := range users {
			var err error
			users[i], err = e.db.CreateUser(t.Context(), fmt.Sprint("watcher ", i))
			require.NoError(t, err)
			lists[i] = e.svc.WatchRooms(t.Context(), t.Context(), users[i])
		}
		// settled waits for each watcher's entry of the general room to
		// show text as its last message with unread(i) messages unread,
		// and returns the entries.
		settled := func(text string, unread func(i int) int, joined func(i int) bool) []*models.Room {
			t.Helper()
			entries := make([]*models.Room, len(lists))
			var wg sync.WaitGroup
			for i, c := range lists {
				wg.Go(func() {
					deadline := time.After(waitFor)
					for {
						select {
						case r := <-c:
							require.NotNil(t, r.Seen, "the entry comes with what watcher %d sees", i)
							if r.ID == e.general.ID && r.Seen.LastMessage != nil && r.Seen.LastMessage.Text == text && r.Seen.UnreadCount == unread(i) {
								assert.Equal(t, joined(i), r.Seen.Joined, "whether watcher %d joined the room", i)
								assert.Nil(t, r.Seen.Members, "a public room has no members")
								entries[i] = r
								return
							}
						case <-deadline:
							assert.Fail(t, "no settled entry", "watcher %d, %q with %d unread", i, text, unread(i))
							return
						}
					}
				})
			}
			wg.Wait()
			return entries
		}

		// The watchers' first reads may still be running: count from
		// when the database is idle.
		before := uint64(testenv.Idle(t, func() float64 { return float64(e.db.Statements()) }))
		_, err := e.svc.PostMessage(t.Context(), e.ada, e.general.ID, "one", "")
		require.NoError(t, err)
		entries := settled("one", func(int) int { return 1 }, func(int) bool { return false })
		statements := e.db.Statements() - before
		distinct := map[*models.Room]bool{}
		for _, r := range entries {
			distinct[r] = true
		}
		assert.Len(t, distinct, 1, "watchers who see the room alike share one copy of it, not one each")
		t.Logf("a message to %d room-list watchers: %d statements, the message's own included", watchers, statements)
		// 12 for the message and its one read for everyone, and the room
		// stream's head, read once per wake-up of its follower: once on an
		// idle machine, up to 4 times seen on a loaded one. A statement per
		// watcher would be 200 more.
		assert.LessOrEqual(t, statements, uint64(watchers/10), "statements for a message to %d watchers", watchers)

		// Watchers read while messages come: every count ends right.
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				_, err := e.svc.PostMessage(t.Context(), e.bob, e.general.ID, fmt.Sprint("more ", i), "")
				assert.NoError(t, err)
			})
		}
		for _, u := range users[:watchers/2] {
			wg.Go(func() {
				_, err := e.svc.MarkRoomRead(t.Context(), u, e.general.ID)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		_, err = e.svc.PostMessage(t.Context(), e.bob, e.general.ID, "last", "")
		require.NoError(t, err)
		// The readers read at some point among the messages: their counts
		// are checked against the database, the others' are 5.
		want := make([]int, watchers)
		for i, u := range users {
			counts, err := e.db.UnreadCounts(t.Context(), []models.RoomUser{{Room: e.general.ID, User: u.ID}})
			require.NoError(t, err)
			want[i] = counts[models.RoomUser{Room: e.general.ID, User: u.ID}]
			if i >= watchers/2 {
				assert.Equal(t, 5, want[i], "watcher %d read nothing", i)
			}
		}
		settled("last", func(i int) int { return want[i] }, func(i int) bool { return i < watchers/2 })
	})
}
