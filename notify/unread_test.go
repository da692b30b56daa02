package notify_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/live/livetest"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestBroadcastCostsNoStatementPerInbox: a broadcast to 200 watched inboxes
// moves every count with a bounded number of statements (those that store
// it), not a count per inbox; a direct one too. A second tab of a watched
// inbox costs no statement.
func TestBroadcastCostsNoStatementPerInbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		const watched = 200
		users := []*models.User{e.ada}
		for i := range watched - 1 {
			users = append(users, newUser(t, e.db, fmt.Sprint("user ", i)))
		}
		var tabs []<-chan int
		for _, u := range users {
			c, err := e.svc.WatchUnread(t.Context(), t.Context(), u)
			require.NoError(t, err)
			tabs = append(tabs, c)
		}
		for i, c := range tabs {
			require.Equal(t, []int{0}, livetest.Received(t, c), "user %d's first count", i)
		}

		before := e.db.Statements()
		again, err := e.svc.WatchUnread(t.Context(), t.Context(), e.ada)
		require.NoError(t, err)
		assert.Equal(t, []int{0}, livetest.Received(t, again))
		assert.Zero(t, e.db.Statements()-before, "statements for a second tab")

		before = e.db.Statements()
		e.send(t, nil, "to everyone")
		statements := e.db.Statements() - before
		for i, c := range append(tabs, again) {
			assert.Equal(t, []int{1}, livetest.Received(t, c), "tab %d after the broadcast", i)
		}
		t.Logf("a broadcast to %d watched inboxes: %d statements", watched, statements)
		assert.LessOrEqual(t, statements, uint64(10), "statements for a broadcast to %d watched inboxes", watched)

		before = e.db.Statements()
		e.send(t, e.ada, "to ada")
		assert.Equal(t, []int{2}, livetest.Received(t, tabs[0]))
		assert.Equal(t, []int{2}, livetest.Received(t, again))
		for i, c := range tabs[1:] {
			assert.Empty(t, livetest.Received(t, c), "user %d after ada's", i)
		}
		assert.LessOrEqual(t, e.db.Statements()-before, uint64(10), "statements for a notification to one user")
	})
}

// replica is one server's notification service on a shared database and
// broker.
type replica struct {
	db  *store.DB
	svc *notify.Service
}

// TestUnreadCountsStayRight: several users watch their counts in two or
// three tabs on two replicas while notifications to everyone and to each
// of them are sent through both, and they read one or all in their tabs,
// all at once. When it settles, every tab shows its inbox's unread count as
// the database counts it.
func TestUnreadCountsStayRight(t *testing.T) {
	for _, dialect := range storetest.Backends {
		t.Run(string(dialect), func(t *testing.T) {
			url := storetest.URL(t, dialect)
			broker := mempubsub.New(0)
			t.Cleanup(func() { assert.NoError(t, broker.Close()) })
			var replicas []replica
			for range 2 {
				db, err := store.Open(t.Context(), url, store.Options{})
				require.NoError(t, err)
				t.Cleanup(func() { assert.NoError(t, db.Close()) })
				require.NoError(t, db.Migrate(t.Context()))
				svc := notify.New(db, broker, notify.Options{Log: slog.New(slog.DiscardHandler)})
				svc.Start(t.Context())
				t.Cleanup(svc.Close)
				replicas = append(replicas, replica{db, svc})
			}
			testUnreadCountsStayRight(t, replicas)
		})
	}
}

// tab is one watcher of a user's unread count: the last value it received.
type tab struct {
	u    *models.User
	mu   sync.Mutex
	last int
}

func (tb *tab) value() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.last
}

func testUnreadCountsStayRight(t *testing.T, replicas []replica) {
	ctx, cancel := context.WithCancel(t.Context())
	var readers sync.WaitGroup
	t.Cleanup(func() { cancel(); readers.Wait() })
	db := replicas[0].db
	var users []*models.User
	var tabs []*tab
	for i := range 6 {
		u := newUser(t, db, fmt.Sprint("user ", i))
		users = append(users, u)
		for j := range 2 + i%2 {
			c, err := replicas[j%2].svc.WatchUnread(ctx, ctx, u)
			require.NoError(t, err)
			tb := &tab{u: u}
			tabs = append(tabs, tb)
			readers.Go(func() {
				for v := range c {
					tb.mu.Lock()
					tb.last = v
					tb.mu.Unlock()
				}
			})
		}
	}

	const rounds = 40
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 15))
			for i := range rounds {
				svc := replicas[r.IntN(2)].svc
				u := users[r.IntN(len(users))]
				var err error
				switch w {
				case 0: // an admin broadcasting
					_, err = svc.Send(ctx, nil, &models.NotificationInput{Title: fmt.Sprint("everyone ", i)}, "")
				case 1: // and sending to one user
					_, err = svc.Send(ctx, nil, &models.NotificationInput{Title: fmt.Sprint("one ", i), UserID: ptr(idOf(u))}, "")
				case 2: // users reading one, in a tab
					var inbox []*models.Notification
					if inbox, err = svc.Inbox(ctx, u, true, 0, 5); err == nil && len(inbox) > 0 {
						_, err = svc.MarkRead(ctx, u, inbox[r.IntN(len(inbox))].ID)
					}
				case 3: // and reading all
					if i%4 == 0 {
						_, err = svc.MarkAllRead(ctx, u)
					}
				}
				assert.NoError(t, err, "writer %d, round %d", w, i)
			}
		})
	}
	writers.Wait()

	want := make(map[int64]int)
	for _, u := range users {
		n, err := db.UnreadNotifications(ctx, u)
		require.NoError(t, err)
		want[u.ID] = n
	}
	settled := func() bool {
		for _, tb := range tabs {
			if tb.value() != want[tb.u.ID] {
				return false
			}
		}
		return true
	}
	if !assert.Eventually(t, settled, 10*time.Second, 10*time.Millisecond, "every tab shows its count") {
		for i, tb := range tabs {
			t.Logf("tab %d of user %d: %d, want %d", i, tb.u.ID, tb.value(), want[tb.u.ID])
		}
	}
}

// TestUnreadCountsRecoverFromPanics: a panic while a notification is applied
// to the counts, or while counts are read, ends only that: after a back-off
// every watched inbox is counted again, and the watchers end right.
func TestUnreadCountsRecoverFromPanics(t *testing.T) {
	for _, where := range []string{"notify.apply", "notify.unread"} {
		t.Run(where, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var armed atomic.Bool
				guard := &panics.Guard{Log: slog.New(slog.DiscardHandler), Inject: func(w string) {
					if w == where && armed.CompareAndSwap(true, false) {
						panic("injected at " + w)
					}
				}}
				db := storetest.Open(t, store.SQLite)
				broker := mempubsub.New(0)
				t.Cleanup(func() { assert.NoError(t, broker.Close()) })
				svc := notify.New(db, broker, notify.Options{Log: slog.New(slog.DiscardHandler), Panics: guard})
				svc.Start(t.Context())
				t.Cleanup(svc.Close)
				ada := newUser(t, db, "ada")
				c, err := svc.WatchUnread(t.Context(), t.Context(), ada)
				require.NoError(t, err)
				assert.Equal(t, []int{0}, livetest.Received(t, c))

				armed.Store(true)
				_, err = svc.Send(t.Context(), nil, &models.NotificationInput{Title: "to everyone"}, "")
				require.NoError(t, err)
				if where == "notify.unread" { // a read in a tab makes the next count
					_, err = svc.MarkAllRead(t.Context(), ada)
					require.NoError(t, err)
				}
				time.Sleep(2 * time.Second) // the back-off after a panic is 1 s
				want := map[string]int{"notify.apply": 1, "notify.unread": 0}[where]
				got := livetest.Received(t, c)
				require.NotEmpty(t, got)
				assert.Equal(t, want, got[len(got)-1])
				assert.False(t, armed.Load(), "the panic was injected")
			})
		})
	}
}
