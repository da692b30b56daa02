package chat_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
)

// roomLoader loads rooms as one user sees them and records what it was
// asked, as the store would for roomsChanged.
type roomLoader struct {
	user   *models.User
	hidden map[int64]error // rooms it refuses, with the error

	mu     sync.Mutex
	loaded []int64
	ctx    context.Context
}

func (l *roomLoader) load(ctx context.Context, id int64) (*models.Room, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loaded = append(l.loaded, id)
	l.ctx = ctx
	if err := l.hidden[id]; err != nil {
		return nil, err
	}
	return &models.Room{ID: id, Name: roomName(id, l.user)}, nil
}

func (l *roomLoader) calls() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loaded
}

func roomName(id int64, u *models.User) string { return fmt.Sprintf("room %d for %s", id, u.Name) }

// watchRooms watches userID's room changes until ctx ends.
func watchRooms(ctx context.Context, e *chat.RoomEvents, u *models.User) (<-chan *models.Room, *roomLoader) {
	l := &roomLoader{user: u}
	return e.Watch(ctx, u.ID, l.load), l
}

// rooms reads what ch holds once everything else has settled, as names.
func rooms(t *testing.T, ch <-chan *models.Room) []string {
	t.Helper()
	var out []string
	for {
		synctest.Wait()
		select {
		case r, ok := <-ch:
			require.True(t, ok, "the channel is closed")
			out = append(out, r.Name)
		default:
			return out
		}
	}
}

func TestRoomEventsReachTheUsersNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := chat.NewRoomEvents()
		e.Changed(9) // before anyone watches: not replayed
		watchers := []struct {
			name string
			user *models.User
		}{{"ada", ada}, {"ada's second tab", ada}, {"bob", bob}, {"cid", cid}}
		chans := make([]<-chan *models.Room, len(watchers))
		for i, w := range watchers {
			chans[i], _ = watchRooms(t.Context(), e, w.user)
		}
		steps := []struct {
			name string
			room int64
			only []int64
			who  []string // user names that get the room
		}{
			{name: "a public room", room: 1, who: []string{"ada", "bob", "cid"}},
			{name: "a direct room of ada and bob", room: 2, only: []int64{ada.ID, bob.ID}, who: []string{"ada", "bob"}},
			{name: "a room read by cid", room: 3, only: []int64{cid.ID}, who: []string{"cid"}},
			{name: "only a user who does not watch", room: 4, only: []int64{99}},
			{name: "the public room again", room: 1, who: []string{"ada", "bob", "cid"}},
		}
		for _, s := range steps {
			e.Changed(s.room, s.only...)
			for i, w := range watchers {
				var want []string
				for _, name := range s.who {
					if name == w.user.Name {
						want = []string{roomName(s.room, w.user)}
					}
				}
				assert.Equal(t, want, rooms(t, chans[i]), "%s: what %s gets", s.name, w.name)
			}
		}
	})
}

func TestRoomEventsMergeWhilePending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := chat.NewRoomEvents()
		ch, l := watchRooms(t.Context(), e, ada)
		e.Changed(1)
		synctest.Wait() // room 1 is loaded and waits for the reader
		for _, id := range []int64{2, 3, 2, 3, 2} {
			e.Changed(id)
		}
		assert.Equal(t, []string{roomName(1, ada), roomName(2, ada), roomName(3, ada)}, rooms(t, ch))
		assert.Equal(t, []int64{1, 2, 3}, l.calls(), "each pending room loaded once")

		e.Changed(2)
		assert.Equal(t, []string{roomName(2, ada)}, rooms(t, ch), "a change after delivery is delivered again")
	})
}

// TestRoomEventsSkipRoomsLoadRefuses: a room the user may not see is
// skipped; one whose load failed is tried again.
func TestRoomEventsSkipRoomsLoadRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := chat.NewRoomEvents()
		l := &roomLoader{user: ada, hidden: map[int64]error{
			2: models.Errorf(models.NotFound, "room 2 not found"),
			3: errors.New("database unavailable"),
		}}
		ch := e.Watch(t.Context(), ada.ID, l.load)

		e.Changed(2)
		assert.Empty(t, rooms(t, ch), "a room ada may not see")
		e.Changed(1)
		synctest.Wait()
		for _, id := range []int64{2, 3, 4} {
			e.Changed(id)
		}
		assert.Equal(t, []string{roomName(1, ada), roomName(4, ada)}, rooms(t, ch), "the rooms after a refused one still come")
		assert.Equal(t, []int64{2, 1, 2, 3, 4}, l.calls())

		// The database is back: the room that failed comes a second later;
		// the invisible one is never asked for again.
		l.mu.Lock()
		delete(l.hidden, 3)
		l.mu.Unlock()
		time.Sleep(time.Second)
		assert.Equal(t, []string{roomName(3, ada)}, rooms(t, ch), "a failed load is tried again")
		time.Sleep(10 * time.Second)
		assert.Empty(t, rooms(t, ch))
		assert.Equal(t, []int64{2, 1, 2, 3, 4, 3}, l.calls())
	})
}

func TestRoomEventsWatchEndsWithContext(t *testing.T) {
	tests := []struct {
		name    string
		pending bool // a loaded room waits for the reader when ctx ends
	}{
		{name: "idle"},
		{name: "sending", pending: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := chat.NewRoomEvents()
				ctx, cancel := context.WithCancel(t.Context())
				ch, l := watchRooms(ctx, e, ada)
				other, _ := watchRooms(t.Context(), e, ada)
				e.Changed(1)
				if !tt.pending {
					assert.Len(t, rooms(t, ch), 1)
				}
				synctest.Wait()
				cancel()
				closed(t, ch)
				require.Error(t, l.ctx.Err(), "load ran with a context that outlives the watch")

				e.Changed(2) // must not block on, or reach, the ended watcher
				assert.Equal(t, []string{roomName(1, ada), roomName(2, ada)}, rooms(t, other), "the other watcher goes on")
				assert.Equal(t, []int64{1}, l.calls())
			})
		})
	}
}
