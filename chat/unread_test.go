package chat_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
	"github.com/switchboardhq/switchboard/stream"
)

// awaitEntries waits until each of lists has shown an entry of room
// roomID that want(i, entry) accepts, failing for those that have not
// within waitFor.
func awaitEntries(t *testing.T, lists []<-chan *models.Room, roomID int64, want func(i int, r *models.Room) bool) {
	t.Helper()
	var wg sync.WaitGroup
	for i, c := range lists {
		wg.Go(func() {
			deadline := time.After(waitFor)
			for {
				select {
				case r := <-c:
					if r.ID == roomID && r.Seen != nil && want(i, r) {
						return
					}
				case <-deadline:
					assert.Fail(t, "no such entry", "watcher %d", i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestBusyRoomCostsConstantStatements: once a public room's unread counts
// are kept, a message in it costs the same few statements whether 200 or
// 600 users watch their room lists (its own writes, and reading the room
// and its last message once for all of them), where counting the unread
// messages and joined flags in groups of 500 users cost more statements
// the more watchers there were. Every watcher still gets its own count.
func TestBusyRoomCostsConstantStatements(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		perMessage := map[int]uint64{}
		for _, watchers := range []int{200, 600} {
			// No stream polls: every statement counted is the message's.
			e := newEnv(t, dialect, chat.Options{Stream: chatStreamWithoutPolls()})
			lists := make([]<-chan *models.Room, watchers)
			for i := range lists {
				u, err := e.db.CreateUser(t.Context(), fmt.Sprint("watcher ", i))
				require.NoError(t, err)
				lists[i] = e.svc.WatchRooms(t.Context(), t.Context(), u)
			}
			e.post(t, e.ada, e.general.ID, "first") // counts every watcher once
			awaitEntries(t, lists, e.general.ID, func(_ int, r *models.Room) bool { return r.Seen.UnreadCount == 1 })

			for n := 2; n <= 3; n++ {
				before := e.db.Statements()
				e.post(t, e.bob, e.general.ID, fmt.Sprint("message ", n))
				awaitEntries(t, lists, e.general.ID, func(_ int, r *models.Room) bool {
					return r.Seen.UnreadCount == n && r.Seen.LastMessage.Text == fmt.Sprint("message ", n)
				})
				statements := e.db.Statements() - before
				t.Logf("message %d to %d room-list watchers: %d statements, the message's own included", n, watchers, statements)
				assert.LessOrEqual(t, statements, uint64(10), "statements for a message to %d watchers", watchers)
				perMessage[watchers] = statements
			}
		}
		assert.Equal(t, perMessage[200], perMessage[600], "statements per message with 200 and 600 watchers")
	})
}

// chatStreamWithoutPolls is stream options whose hubs never poll the
// database during a test: messages come through the broker only.
func chatStreamWithoutPolls() (o stream.Options) {
	o.PollInterval = time.Hour
	return o
}

// roomTab is one tab's room list: the last entry of each room it showed.
type roomTab struct {
	user    *models.User
	changed chan struct{} // holds a token after each entry
	mu      sync.Mutex
	last    map[int64]models.RoomSeen
}

// await waits until the tab's last entry of room roomID has want's unread
// count and joined flag, and returns it (the last one after waitFor).
func (tb *roomTab) await(roomID int64, want models.RoomSeen) models.RoomSeen {
	deadline := time.After(waitFor)
	for {
		tb.mu.Lock()
		got := tb.last[roomID]
		tb.mu.Unlock()
		if got.UnreadCount == want.UnreadCount && got.Joined == want.Joined {
			return got
		}
		select {
		case <-tb.changed:
		case <-deadline:
			return got
		}
	}
}

// openTab watches u's room list on svc until the test ends.
func openTab(t *testing.T, svc *chat.Service, u *models.User) *roomTab {
	ctx, stop := context.WithCancel(context.Background())
	tb := &roomTab{user: u, changed: make(chan struct{}, 1), last: map[int64]models.RoomSeen{}}
	c := svc.WatchRooms(ctx, ctx, u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range c {
			tb.mu.Lock()
			tb.last[r.ID] = *r.Seen
			tb.mu.Unlock()
			select {
			case tb.changed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return tb
}

// TestRoomUnreadCountsStayRight: five users watch their room lists in two
// or three tabs spread over two replicas while messages are posted to the
// general room and to a direct room through both, and the users read them
// in their tabs, all at once. When it settles, every tab shows each room's
// unread count and joined flag as the database has them.
func TestRoomUnreadCountsStayRight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		broker := mempubsub.New(0)
		t.Cleanup(func() { assert.NoError(t, broker.Close()) })
		e := startEnv(t, db, broker, chat.Options{})
		other := chat.New(db, broker, chat.Options{Stream: stream.Options{PollInterval: 50 * time.Millisecond}, LeaveGrace: -1})
		ctx, stop := context.WithCancel(context.Background())
		other.Start(ctx)
		t.Cleanup(func() {
			other.Close()
			stop()
		})
		replicas := []*chat.Service{e.svc, other}

		users := make([]*models.User, 5)
		var tabs []*roomTab
		for i := range users {
			var err error
			users[i], err = db.CreateUser(t.Context(), fmt.Sprint("reader ", i))
			require.NoError(t, err)
			for j := range 2 + i%2 {
				tabs = append(tabs, openTab(t, replicas[(i+j)%2], users[i]))
			}
		}
		direct, err := e.svc.OpenDirectRoom(t.Context(), users[0], users[1].ID)
		require.NoError(t, err)
		rooms := []int64{e.general.ID, direct.ID}
		// In the direct room, only its members post and read.
		actors := func(room int64) []*models.User {
			if room == direct.ID {
				return users[:2]
			}
			return append([]*models.User{e.ada}, users...)
		}

		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(w), 15))
				for range 15 {
					svc := replicas[rnd.IntN(2)]
					room := rooms[rnd.IntN(2)]
					who := actors(room)
					u := who[rnd.IntN(len(who))]
					if rnd.IntN(3) == 0 {
						_, err := svc.MarkRoomRead(t.Context(), u, room)
						assert.NoError(t, err)
						continue
					}
					_, err := svc.PostMessage(t.Context(), u, room, fmt.Sprintf("from %d", w), "")
					assert.NoError(t, err)
				}
			})
		}
		wg.Wait()

		var keys []models.RoomUser
		for _, u := range users {
			keys = append(keys, models.RoomUser{Room: e.general.ID, User: u.ID})
		}
		keys = append(keys, models.RoomUser{Room: direct.ID, User: users[0].ID}, models.RoomUser{Room: direct.ID, User: users[1].ID})
		unread, err := db.UnreadCounts(t.Context(), keys)
		require.NoError(t, err)
		joined, err := db.Joined(t.Context(), keys)
		require.NoError(t, err)
		for _, k := range keys {
			want := models.RoomSeen{UnreadCount: unread[k], Joined: k.Room == direct.ID || joined[k]}
			for i, tb := range tabs {
				if tb.user.ID != k.User {
					continue
				}
				got := tb.await(k.Room, want)
				assert.Equal(t, want.UnreadCount, got.UnreadCount, "unread count in tab %d of user %d, room %d", i, k.User, k.Room)
				assert.Equal(t, want.Joined, got.Joined, "joined flag in tab %d of user %d, room %d", i, k.User, k.Room)
			}
		}
	})
}

// TestRoomUnreadCountsAfterLostAnnouncements: a replica whose broker
// subscription dropped may have missed reads announced meanwhile; once
// subscribed again it counts its room lists again, so a tab there does not
// keep a count read in another tab.
func TestRoomUnreadCountsAfterLostAnnouncements(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		mem := mempubsub.New(0)
		t.Cleanup(func() { assert.NoError(t, mem.Close()) })
		e := startEnv(t, db, pubsubtest.NewOutage(mem), chat.Options{})
		cut := pubsubtest.NewOutage(mem) // the other replica's way to the broker
		other := chat.New(db, cut, chat.Options{Stream: stream.Options{PollInterval: 50 * time.Millisecond}, LeaveGrace: -1})
		ctx, stop := context.WithCancel(context.Background())
		other.Start(ctx)
		t.Cleanup(func() {
			other.Close()
			stop()
		})

		tb := openTab(t, other, e.bob)
		e.post(t, e.ada, e.general.ID, "news")
		got := tb.await(e.general.ID, models.RoomSeen{UnreadCount: 1})
		require.Equal(t, 1, got.UnreadCount, "bob's tab on the other replica counts ada's message")

		cut.SetDown(true)
		_, err := e.svc.MarkRoomRead(t.Context(), e.bob, e.general.ID) // announced while the other replica cannot hear
		require.NoError(t, err)
		cut.SetDown(false)
		got = tb.await(e.general.ID, models.RoomSeen{UnreadCount: 0, Joined: true})
		assert.Equal(t, 0, got.UnreadCount, "bob's tab after he read in another tab")
		assert.True(t, got.Joined, "reading joins the room")
	})
}

// TestRoomCountsFollowOnTheirOwn: the stream follower that keeps a room's
// counts serves every watcher of the room, so it reports no position to
// the watcher whose read started it: a transport that records the
// positions of a subscription's streams (to move it into a shared group)
// must not take a room-list watcher for a stream subscriber. The watcher
// itself reports only that it is caught up at 0, at once (its subscriber
// joins a shared delivery from its head).
func TestRoomCountsFollowOnTheirOwn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		var recorded sync.Map
		record := func(what string) func(int64) {
			return func(pos int64) { recorded.Store(fmt.Sprint(what, " ", pos), true) }
		}
		ctx := stream.WithPositionRecorder(t.Context(), record("sent"), record("caught up"))
		rooms := e.svc.WatchRooms(ctx, ctx, e.bob)
		for _, text := range []string{"one", "two"} {
			e.post(t, e.ada, e.general.ID, text)
			awaitEntries(t, []<-chan *models.Room{rooms}, e.general.ID, func(_ int, r *models.Room) bool {
				return r.Seen.LastMessage != nil && r.Seen.LastMessage.Text == text
			})
		}
		var got []string
		recorded.Range(func(k, _ any) bool {
			got = append(got, k.(string))
			return true
		})
		assert.Equal(t, []string{"caught up 0"}, got, "the positions recorded for the room-list watcher")
	})
}
