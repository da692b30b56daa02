package notify_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/live/livetest"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestMain fails the package when a test leaves goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is the notification service as app wires it: a fresh SQLite
// database and the in-process broker, with two users.
type env struct {
	db       *store.DB
	broker   *pubsubtest.Outage
	svc      *notify.Service
	ada, bob *models.User
}

// newEnv starts the service; all of it is closed when the test ends. It
// runs inside a synctest bubble.
func newEnv(t *testing.T) *env {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	broker := pubsubtest.NewOutage(mempubsub.New(0))
	t.Cleanup(func() { assert.NoError(t, broker.Close()) })
	svc := notify.New(db, broker, notify.Options{Log: slog.New(slog.DiscardHandler)})
	svc.Start(t.Context())
	t.Cleanup(svc.Close)
	return &env{db: db, broker: broker, svc: svc, ada: newUser(t, db, "ada"), bob: newUser(t, db, "bob")}
}

// newUser creates a user named name.
func newUser(t *testing.T, db *store.DB, name string) *models.User {
	t.Helper()
	u, err := db.CreateUser(t.Context(), name)
	require.NoError(t, err)
	return u
}

// send sends a notification titled title to u, or to everyone when u is
// nil, and lets it reach every subscriber.
func (e *env) send(t *testing.T, u *models.User, title string) *models.Notification {
	t.Helper()
	in := &models.NotificationInput{Title: title}
	if u != nil {
		in.UserID = ptr(idOf(u))
	}
	n, err := e.svc.Send(t.Context(), nil, in, "")
	require.NoError(t, err, "send %q", title)
	synctest.Wait()
	return n
}

// subscribe subscribes u to their notifications after after (nil: from
// now on) until the test ends.
func (e *env) subscribe(t *testing.T, u *models.User, after *int64) <-chan *models.Notification {
	t.Helper()
	c, err := e.svc.Subscribe(t.Context(), u, after)
	require.NoError(t, err)
	return c
}

// titles returns the titles of ns, in order.
func titles(ns []*models.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Title
	}
	return out
}

// idOf is u's ID as the API spells it.
func idOf(u *models.User) string { return strconv.FormatInt(u.ID, 10) }

func ptr[T any](v T) *T { return &v }

func TestSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		ctx := t.Context()
		tests := []struct {
			name string
			in   models.NotificationInput
			code models.Code
		}{
			{name: "no title", in: models.NotificationInput{Title: "  "}, code: models.BadUserInput},
			{name: "body too long", in: models.NotificationInput{Title: "t", Body: strings.Repeat("x", 2001)}, code: models.BadUserInput},
			{name: "unknown level", in: models.NotificationInput{Title: "t", Level: ptr(models.Level("fatal"))}, code: models.BadUserInput},
			{name: "script link", in: models.NotificationInput{Title: "t", Link: ptr("javascript:alert(1)")}, code: models.BadUserInput},
			{name: "unknown user", in: models.NotificationInput{Title: "t", UserID: ptr("999")}, code: models.NotFound},
			{name: "user 0", in: models.NotificationInput{Title: "t", UserID: ptr("0")}, code: models.NotFound},
			{name: "user -1", in: models.NotificationInput{Title: "t", UserID: ptr("-1")}, code: models.NotFound},
			{name: "malformed user", in: models.NotificationInput{Title: "t", UserID: ptr("ada")}, code: models.NotFound},
		}
		for _, tt := range tests { // no t.Run in a bubble
			n, err := e.svc.Send(ctx, nil, &tt.in, "")
			assert.Equal(t, tt.code, models.ErrorCode(err), "%s: error %v", tt.name, err)
			assert.Nil(t, n, tt.name)
		}
		head, err := e.db.NotificationLog().Head(ctx, models.NotificationStream)
		require.NoError(t, err)
		assert.Zero(t, head, "a refused notification was stored")

		n, err := e.svc.Send(ctx, nil, &models.NotificationInput{UserID: ptr(idOf(e.ada)), Title: " Report ready ", Body: "42 pages", Link: ptr("/reports/1")}, "")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n.ID)
		assert.Equal(t, &e.ada.ID, n.RecipientID)
		assert.Equal(t, "Report ready", n.Title)
		assert.Equal(t, models.LevelInfo, n.Level)
		assert.Equal(t, time.Now().UTC(), n.CreatedAt)

		b, err := e.svc.Send(ctx, nil, &models.NotificationInput{Title: "Maintenance", Level: ptr(models.LevelWarning)}, "")
		require.NoError(t, err)
		assert.Equal(t, int64(2), b.ID)
		assert.True(t, b.Broadcast())
		got, err := e.svc.Inbox(ctx, e.bob, false, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"Maintenance"}, titles(got), "bob's inbox")
		unread, err := e.svc.Unread(ctx, e.bob)
		require.NoError(t, err)
		assert.Equal(t, 1, unread, "bob's unread count")
	})
}

func TestSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		ada, bob := e.subscribe(t, e.ada, nil), e.subscribe(t, e.bob, nil)
		e.send(t, e.ada, "ada 1")
		e.send(t, e.bob, "bob 1")
		e.send(t, nil, "everyone 1")
		e.send(t, e.ada, "ada 2")
		assert.Equal(t, []string{"ada 1", "everyone 1", "ada 2"}, titles(livetest.Received(t, ada)))
		assert.Equal(t, []string{"bob 1", "everyone 1"}, titles(livetest.Received(t, bob)))

		// Resuming replays exactly what is missing of one's own inbox, then
		// continues live.
		tests := []struct {
			name  string
			after int64
			want  []string
		}{
			{name: "from the start", after: 0, want: []string{"ada 1", "everyone 1", "ada 2"}},
			{name: "after the first", after: 1, want: []string{"everyone 1", "ada 2"}},
			{name: "after bob's", after: 2, want: []string{"everyone 1", "ada 2"}},
			{name: "after the last", after: 4, want: []string{}},
		}
		var resumed []<-chan *models.Notification
		for _, tt := range tests {
			c := e.subscribe(t, e.ada, &tt.after)
			assert.Equal(t, tt.want, titles(livetest.Received(t, c)), "resumed %s", tt.name)
			resumed = append(resumed, c)
		}
		e.send(t, e.bob, "bob 2")
		e.send(t, e.ada, "ada 3")
		for i, c := range append(resumed, ada) {
			assert.Equal(t, []string{"ada 3"}, titles(livetest.Received(t, c)), "subscription %d, live after resuming", i)
		}
		assert.Equal(t, []string{"bob 2"}, titles(livetest.Received(t, bob)))

		// Broadcasts sent before a user existed are not theirs.
		time.Sleep(2 * time.Second)
		cid := newUser(t, e.db, "cid")
		all := e.subscribe(t, cid, ptr(int64(0)))
		assert.Empty(t, livetest.Received(t, all), "cid got what was sent before cid existed")
		e.send(t, nil, "everyone 2")
		assert.Equal(t, []string{"everyone 2"}, titles(livetest.Received(t, all)))
	})
}

func TestMarkRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		ctx := t.Context()
		mine, theirs := e.send(t, e.ada, "ada's"), e.send(t, e.bob, "bob's")
		_, err := e.svc.MarkRead(ctx, e.ada, theirs.ID)
		assert.Equal(t, models.NotFound, models.ErrorCode(err), "marking another user's notification: %v", err)
		_, err = e.svc.MarkRead(ctx, e.ada, 99)
		assert.Equal(t, models.NotFound, models.ErrorCode(err), "marking a missing notification: %v", err)
		for range 2 {
			n, err := e.svc.MarkRead(ctx, e.ada, mine.ID)
			require.NoError(t, err)
			assert.True(t, n.Read)
		}
		e.send(t, nil, "everyone's")
		n, err := e.svc.MarkAllRead(ctx, e.ada)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = e.svc.MarkAllRead(ctx, e.ada)
		require.NoError(t, err)
		assert.Zero(t, n)
		n, err = e.svc.MarkAllRead(ctx, e.bob)
		require.NoError(t, err)
		assert.Equal(t, 2, n, "bob's own and the broadcast ada read")
	})
}

func TestWatchUnread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		ctx := t.Context()
		first := e.send(t, e.ada, "before watching")
		watch := func(ctx context.Context, u *models.User) <-chan int {
			c, err := e.svc.WatchUnread(ctx, ctx, u)
			require.NoError(t, err)
			return c
		}
		tabCtx, closeTab := context.WithCancel(ctx)
		adaTab1, adaTab2, bob := watch(ctx, e.ada), watch(tabCtx, e.ada), watch(ctx, e.bob)
		steps := []struct {
			name            string
			do              func()
			ada, bob        []int // what each of ada's tabs and bob receive
			adaTab2Excluded bool
		}{
			{name: "watching", do: func() {}, ada: []int{1}, bob: []int{0}},
			{name: "one to ada", do: func() { e.send(t, e.ada, "to ada") }, ada: []int{2}},
			{name: "one to bob", do: func() { e.send(t, e.bob, "to bob") }, bob: []int{1}},
			{name: "one to everyone", do: func() { e.send(t, nil, "to everyone") }, ada: []int{3}, bob: []int{2}},
			{name: "ada reads one in a tab", do: func() {
				_, err := e.svc.MarkRead(ctx, e.ada, first.ID)
				require.NoError(t, err)
			}, ada: []int{2}},
			{name: "ada reads all", do: func() {
				_, err := e.svc.MarkAllRead(ctx, e.ada)
				require.NoError(t, err)
			}, ada: []int{0}},
			{name: "ada reads all again", do: func() {
				_, err := e.svc.MarkAllRead(ctx, e.ada)
				require.NoError(t, err)
			}},
			{name: "bob fails to read ada's", do: func() {
				_, err := e.svc.MarkRead(ctx, e.bob, first.ID)
				require.Error(t, err)
			}},
			{name: "bob reads all", do: func() {
				_, err := e.svc.MarkAllRead(ctx, e.bob)
				require.NoError(t, err)
			}, bob: []int{0}},
			{name: "ada's second tab closed", do: closeTab, adaTab2Excluded: true},
			{name: "one to ada after", do: func() { e.send(t, e.ada, "to ada, later") }, ada: []int{1}, adaTab2Excluded: true},
		}
		for _, s := range steps {
			s.do()
			assert.Equal(t, s.ada, livetest.Received(t, adaTab1), "%s: ada's first tab", s.name)
			if !s.adaTab2Excluded {
				assert.Equal(t, s.ada, livetest.Received(t, adaTab2), "%s: ada's second tab", s.name)
			}
			assert.Equal(t, s.bob, livetest.Received(t, bob), "%s: bob", s.name)
		}
		synctest.Wait()
		_, ok := <-adaTab2
		assert.False(t, ok, "a closed tab's channel stays open")
	})
}

// TestUnreadCountsDuringABrokerOutage: while the broker is down, a
// notification sent through this replica still moves its watchers' counts;
// one committed by another replica meanwhile shows once the broker is back.
func TestUnreadCountsDuringABrokerOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		c, err := e.svc.WatchUnread(t.Context(), t.Context(), e.ada)
		require.NoError(t, err)
		assert.Equal(t, []int{0}, livetest.Received(t, c))

		e.broker.SetDown(true)
		e.send(t, e.ada, "sent here")
		assert.Equal(t, []int{1}, livetest.Received(t, c), "this replica's watchers are told")

		// Another replica sends to everyone: committed, never announced.
		_, err = e.db.CreateNotification(t.Context(), &models.Notification{Title: "from elsewhere", Level: models.LevelInfo}, time.Now(), nil)
		require.NoError(t, err)
		e.broker.SetDown(false)
		time.Sleep(2 * time.Second) // Follow resubscribes within a second
		assert.Equal(t, []int{2}, livetest.Received(t, c), "recounted once the broker is back")
	})
}

// TestSendIdempotent: a retry with the key of a notification returns the
// first one and stores and delivers nothing; the key with another input
// is BAD_USER_INPUT; another sender's same key is theirs.
func TestSendIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		ctx := t.Context()
		ops, other := newUser(t, e.db, "ops"), newUser(t, e.db, "other ops")
		live := e.subscribe(t, e.ada, nil)
		in := &models.NotificationInput{UserID: ptr(idOf(e.ada)), Title: "Report ready", Link: ptr("/reports/1")}

		first, err := e.svc.Send(ctx, ops, in, "k")
		require.NoError(t, err)
		assert.Equal(t, []string{"Report ready"}, titles(livetest.Received(t, live)))
		again, err := e.svc.Send(ctx, ops, &models.NotificationInput{UserID: ptr(idOf(e.ada)), Title: " Report ready ", Link: ptr("/reports/1")}, "k")
		require.NoError(t, err, "the same input, trimmed")
		assert.Equal(t, first, again)
		assert.Empty(t, livetest.Received(t, live), "delivered once")
		head, err := e.db.NotificationLog().Head(ctx, models.NotificationStream)
		require.NoError(t, err)
		assert.Equal(t, first.ID, head, "stored once")

		for name, changed := range map[string]*models.NotificationInput{
			"title":     {UserID: in.UserID, Title: "Report late", Link: in.Link},
			"recipient": {UserID: ptr(idOf(e.bob)), Title: in.Title, Link: in.Link},
			"broadcast": {Title: in.Title, Link: in.Link},
			"level":     {UserID: in.UserID, Title: in.Title, Link: in.Link, Level: ptr(models.LevelError)},
		} {
			_, err := e.svc.Send(ctx, ops, changed, "k")
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: %v", name, err)
		}

		theirs, err := e.svc.Send(ctx, other, in, "k")
		require.NoError(t, err, "another sender's k")
		assert.Equal(t, first.ID+1, theirs.ID)
		assert.Equal(t, []string{"Report ready"}, titles(livetest.Received(t, live)))
	})
}
