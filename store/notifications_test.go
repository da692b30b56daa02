package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// NotificationLog is what stream.Feed reads the notification stream from.
var _ stream.Source[*models.Notification] = store.NotificationLog{}

// notify stores a notification titled title at now, to u or (u nil) to
// everyone.
func notify(tb testing.TB, db *store.DB, u *models.User, title string, now time.Time) *models.Notification {
	tb.Helper()
	n := &models.Notification{Title: title, Body: "body of " + title, Level: models.LevelInfo}
	if u != nil {
		n.RecipientID = &u.ID
	}
	_, err := db.CreateNotification(context.Background(), n, now, nil)
	require.NoError(tb, err, "create notification %q", title)
	return n
}

// forEachInbox runs test in parallel on a fresh store of each database kind
// with two users, ada and bob.
func forEachInbox(t *testing.T, test func(t *testing.T, db *store.DB, ada, bob *models.User)) {
	t.Helper()
	forEachStore(t, func(t *testing.T, db *store.DB) { test(t, db, newUser(t, db, "ada"), newUser(t, db, "bob")) })
}

// notificationIDs returns the IDs of ns, in order.
func notificationIDs(ns []*models.Notification) []int64 {
	return each(ns, func(n *models.Notification) int64 { return n.ID })
}

// inboxOf returns u's whole inbox, newest first.
func inboxOf(tb testing.TB, db *store.DB, u *models.User) []*models.Notification {
	tb.Helper()
	ns, err := db.Notifications(context.Background(), u, false, 0, 1000)
	require.NoError(tb, err)
	return ns
}

// unread returns u's unread count.
func unread(tb testing.TB, db *store.DB, u *models.User) int {
	tb.Helper()
	n, err := db.UnreadNotifications(context.Background(), u)
	require.NoError(tb, err)
	return n
}

func TestCreateNotification(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada := newUser(t, db, "ada")
		// In another zone and with nanoseconds, which the store drops.
		now := ada.CreatedAt.Add(time.Minute + 456_789).In(time.FixedZone("CEST", 2*3600))
		link := "/rooms/1"
		sent := []*models.Notification{
			{RecipientID: &ada.ID, Title: "Café 🚀", Body: "", Level: models.LevelSuccess, Link: &link},
			{Title: "maintenance", Body: strings.Repeat("ü", 2000), Level: models.LevelWarning},
			{RecipientID: &ada.ID, Title: "it's \"100%\" _done_", Body: "b", Level: models.LevelError},
		}
		for i, n := range sent {
			_, err := db.CreateNotification(ctx, n, now.Add(time.Duration(i)*time.Second), nil)
			require.NoError(t, err)
			assert.Equal(t, int64(i+1), n.ID, "the ID is the position in the stream")
			assert.Equal(t, now.Add(time.Duration(i)*time.Second).UTC().Truncate(time.Millisecond), n.CreatedAt)
		}
		head, err := db.NotificationLog().Head(ctx, models.NotificationStream)
		require.NoError(t, err)
		assert.Equal(t, int64(3), head)

		got, err := db.NotificationLog().After(ctx, models.NotificationStream, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, sent, got, "read back from the stream")
		mine := inboxOf(t, db, ada)
		slices.Reverse(mine)
		assert.Equal(t, sent, mine, "read back from the inbox")
	})
}

func TestCreateNotificationConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		replicas := twoReplicas(t, dialect)
		const writers, perWriter = 4, 15
		titles := make(map[int64]string)
		got := make([][]*models.Notification, writers)
		together(writers, func(w int) {
			for i := range perWriter {
				n := &models.Notification{Title: fmt.Sprintf("writer %d #%d", w, i), Level: models.LevelInfo}
				if _, err := replicas[w%2].CreateNotification(context.Background(), n, time.Now(), nil); !assert.NoError(t, err) {
					return
				}
				got[w] = append(got[w], n)
			}
		})
		require.False(t, t.Failed(), "some notifications failed")
		var all []int64
		for _, ns := range got {
			assert.True(t, slices.IsSorted(notificationIDs(ns)), "one writer's IDs decrease: %v", notificationIDs(ns))
			for _, n := range ns {
				all = append(all, n.ID)
				titles[n.ID] = n.Title
			}
		}
		slices.Sort(all)
		assert.Equal(t, seq(1, writers*perWriter), all, "IDs handed out")
		stored, err := replicas[1].NotificationLog().After(t.Context(), models.NotificationStream, 0, 1000)
		require.NoError(t, err)
		require.Equal(t, seq(1, writers*perWriter), notificationIDs(stored))
		for _, n := range stored {
			assert.Equal(t, titles[n.ID], n.Title, "notification %d", n.ID)
		}
	})
}

// TestInbox checks whose inbox each notification is in: one addressed to a
// user whenever it was sent, and every broadcast sent since the second the
// user was created, and that models.Notification.InInbox, which live
// subscriptions use, agrees with the inbox the queries read.
func TestInbox(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		second := ada.CreatedAt.Truncate(time.Second)
		sameSecond := bob.CreatedAt.Truncate(time.Second).Equal(second)
		toAdaEarlier := notify(t, db, ada, "to ada, before she existed", second.Add(-time.Hour))
		broadcastEarlier := notify(t, db, nil, "to everyone, the millisecond before ada's second", second.Add(-time.Millisecond))
		broadcastAtSecond := notify(t, db, nil, "to everyone, at the start of ada's second", second)
		toBob := notify(t, db, bob, "to bob", ada.CreatedAt.Add(time.Minute))
		broadcastLater := notify(t, db, nil, "to everyone, later", ada.CreatedAt.Add(time.Hour))
		toAda := notify(t, db, ada, "to ada", ada.CreatedAt.Add(2*time.Hour))

		wantAda := []int64{toAda.ID, broadcastLater.ID, broadcastAtSecond.ID, toAdaEarlier.ID}
		assert.Equal(t, wantAda, notificationIDs(inboxOf(t, db, ada)), "ada's inbox, newest first")
		wantBob := []int64{broadcastLater.ID, toBob.ID}
		if sameSecond {
			wantBob = append(wantBob, broadcastAtSecond.ID)
		}
		assert.Equal(t, wantBob, notificationIDs(inboxOf(t, db, bob)), "bob's inbox, newest first (created in ada's second: %v)", sameSecond)
		assert.Equal(t, len(wantAda), unread(t, db, ada))
		assert.Equal(t, len(wantBob), unread(t, db, bob))

		all, err := db.NotificationLog().After(t.Context(), models.NotificationStream, 0, 100)
		require.NoError(t, err)
		require.Len(t, all, 6)
		for _, u := range []*models.User{ada, bob} {
			inbox := notificationIDs(inboxOf(t, db, u))
			for _, n := range all {
				assert.Equal(t, slices.Contains(inbox, n.ID), n.InInbox(u), "InInbox(%q, %s)", n.Title, u.Name)
			}
		}
		assert.False(t, broadcastEarlier.InInbox(ada))
	})
}

func TestNotificationsPaging(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		now := ada.CreatedAt.Add(time.Minute)
		// IDs 1…8: ada's at 1, 2, 4, 6, 7, broadcasts at 3 and 8, bob's at 5.
		for _, to := range []*models.User{ada, ada, nil, ada, bob, ada, ada, nil} {
			notify(t, db, to, "n", now)
		}
		for _, id := range []int64{2, 3, 7} {
			_, err := db.MarkNotificationRead(ctx, ada, id)
			require.NoError(t, err)
		}
		tests := []struct {
			name       string
			unreadOnly bool
			before     int64
			limit      int
			want       []int64
			wantRead   []bool
		}{
			{name: "all", limit: 100, want: []int64{8, 7, 6, 4, 3, 2, 1}, wantRead: []bool{false, true, false, false, true, true, false}},
			{name: "first page", limit: 3, want: []int64{8, 7, 6}, wantRead: []bool{false, true, false}},
			{name: "next page", before: 6, limit: 3, want: []int64{4, 3, 2}, wantRead: []bool{false, true, true}},
			{name: "last page", before: 2, limit: 3, want: []int64{1}, wantRead: []bool{false}},
			{name: "before the first", before: 1, limit: 3, want: []int64{}, wantRead: []bool{}},
			{name: "before another user's", before: 5, limit: 2, want: []int64{4, 3}, wantRead: []bool{false, true}},
			{name: "unread", unreadOnly: true, limit: 100, want: []int64{8, 6, 4, 1}, wantRead: []bool{false, false, false, false}},
			{name: "unread, paged", unreadOnly: true, before: 6, limit: 1, want: []int64{4}, wantRead: []bool{false}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := db.Notifications(ctx, ada, tt.unreadOnly, tt.before, tt.limit)
				require.NoError(t, err)
				assert.Equal(t, tt.want, notificationIDs(got))
				assert.Equal(t, tt.wantRead, each(got, func(n *models.Notification) bool { return n.Read }))
			})
		}
		assert.Equal(t, 4, unread(t, db, ada))
		bobs, err := db.Notifications(ctx, bob, false, 0, 100)
		require.NoError(t, err)
		assert.Equal(t, []int64{8, 5, 3}, notificationIDs(bobs))
		assert.Equal(t, []bool{false, false, false}, each(bobs, func(n *models.Notification) bool { return n.Read }),
			"ada's reads of broadcasts count for bob")
	})
}

// TestNotificationNotFound checks that another user's notification cannot be
// told apart from a missing one, on every path.
func TestNotificationNotFound(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		mine := notify(t, db, ada, "for ada", time.Now())
		theirs := notify(t, db, bob, "for bob", time.Now())

		got, err := db.Notification(ctx, ada, mine.ID)
		require.NoError(t, err)
		assert.Equal(t, mine.Title, got.Title)
		assert.False(t, got.Read)

		// shape is an error's message with the ID it names replaced.
		shape := func(err error, id int64) string {
			return strings.ReplaceAll(err.Error(), fmt.Sprint(id), "N")
		}
		var shapes []string
		for _, id := range []int64{theirs.ID, 999, 0, -1} {
			_, err := db.Notification(ctx, ada, id)
			requireCode(t, models.NotFound, err)
			shapes = append(shapes, shape(err, id))
			_, err = db.MarkNotificationRead(ctx, ada, id)
			requireCode(t, models.NotFound, err)
			shapes = append(shapes, shape(err, id))
		}
		for _, s := range shapes {
			assert.Equal(t, shapes[0], s, "a message tells another user's notification from a missing one")
		}
		got, err = db.Notification(ctx, bob, theirs.ID)
		require.NoError(t, err)
		assert.False(t, got.Read, "ada's attempt marked bob's notification read")
		assert.Equal(t, 1, unread(t, db, bob))
		assert.Equal(t, 1, unread(t, db, ada))
	})
}

func TestMarkNotificationRead(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		n := notify(t, db, ada, "for ada", time.Now())
		b := notify(t, db, nil, "for everyone", time.Now())
		assert.Equal(t, 2, unread(t, db, ada))
		for i := range 2 {
			got, err := db.MarkNotificationRead(ctx, ada, n.ID)
			require.NoError(t, err, "mark read, time %d", i+1)
			assert.True(t, got.Read)
			assert.Equal(t, n.Title, got.Title)
			assert.Equal(t, 1, unread(t, db, ada), "after marking read %d times", i+1)
			again, err := db.Notification(ctx, ada, n.ID)
			require.NoError(t, err)
			assert.True(t, again.Read)
		}
		_, err := db.MarkNotificationRead(ctx, ada, b.ID)
		require.NoError(t, err)
		assert.Zero(t, unread(t, db, ada))
		forBob, err := db.Notification(ctx, bob, b.ID)
		require.NoError(t, err)
		assert.False(t, forBob.Read, "ada's read of a broadcast counts for bob")
		assert.Equal(t, 1, unread(t, db, bob))
	})
}

func TestMarkAllNotificationsRead(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		now := time.Now()
		notify(t, db, ada, "1", now)
		notify(t, db, nil, "2", now)
		notify(t, db, bob, "3", now)
		notify(t, db, ada, "4", now)
		_, err := db.MarkNotificationRead(ctx, ada, 4)
		require.NoError(t, err)

		n, err := db.MarkAllNotificationsRead(ctx, ada)
		require.NoError(t, err)
		assert.Equal(t, 2, n, "ada had 2 unread")
		assert.Zero(t, unread(t, db, ada))
		assert.Equal(t, []bool{true, true, true}, each(inboxOf(t, db, ada), func(n *models.Notification) bool { return n.Read }))
		n, err = db.MarkAllNotificationsRead(ctx, ada)
		require.NoError(t, err)
		assert.Zero(t, n, "marked again")

		assert.Equal(t, 2, unread(t, db, bob), "ada's reads count for bob")
		assert.Equal(t, []bool{false, false}, each(inboxOf(t, db, bob), func(n *models.Notification) bool { return n.Read }))

		notify(t, db, nil, "5", now)
		n, err = db.MarkAllNotificationsRead(ctx, ada)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "a new broadcast")
		n, err = db.MarkAllNotificationsRead(ctx, bob)
		require.NoError(t, err)
		assert.Equal(t, 3, n)
	})
}

// TestMarkReadInTwoTabs marks everything read in two tabs at once, while a
// third marks single notifications: none fails, and the counts add up.
func TestMarkReadInTwoTabs(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada := newUser(t, db, "ada")
		const sent = 30
		for i := range sent {
			to := ada
			if i%3 == 0 {
				to = nil
			}
			notify(t, db, to, fmt.Sprint(i), time.Now())
		}
		var counts [2]int
		together(3, func(tab int) {
			if tab == 2 {
				for id := int64(sent); id > 0; id -= 2 {
					_, err := db.MarkNotificationRead(context.Background(), ada, id)
					assert.NoError(t, err, "mark %d read", id)
				}
				return
			}
			n, err := db.MarkAllNotificationsRead(context.Background(), ada)
			assert.NoError(t, err, "tab %d", tab)
			counts[tab] = n
		})
		assert.Zero(t, unread(t, db, ada))
		assert.LessOrEqual(t, counts[0]+counts[1], sent, "marked more than there were: %v", counts)
		assert.GreaterOrEqual(t, counts[0]+counts[1], sent/2, "the single reads cover only half: %v", counts)
	})
}

func TestNotificationLog(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		log := db.NotificationLog()
		head, err := log.Head(ctx, models.NotificationStream)
		require.NoError(t, err)
		assert.Zero(t, head, "an empty stream")
		got, err := log.After(ctx, models.NotificationStream, 0, 10)
		require.NoError(t, err)
		assert.Empty(t, got)

		for _, to := range []*models.User{ada, bob, nil, ada, bob} {
			notify(t, db, to, "n", time.Now())
		}
		head, err = log.Head(ctx, models.NotificationStream)
		require.NoError(t, err)
		assert.Equal(t, int64(5), head)
		got, err = log.After(ctx, models.NotificationStream, 1, 3)
		require.NoError(t, err)
		assert.Equal(t, []int64{2, 3, 4}, notificationIDs(got), "everyone's, oldest first")
		got, err = log.After(ctx, models.NotificationStream, 5, 3)
		require.NoError(t, err)
		assert.Empty(t, got)
	})
}

// TestInboxAfter: a replay reads one inbox in stream order, page by page,
// and says how far it has read it; other users' notifications are not
// returned (nor read: see TestNotificationQueryPlans).
func TestInboxAfter(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		log := db.NotificationLog()
		got, through, err := log.InboxAfter(ctx, ada, 0, 10)
		require.NoError(t, err)
		assert.Empty(t, got)
		assert.Zero(t, through, "an empty stream")

		old := notify(t, db, nil, "before ada existed", ada.CreatedAt.Truncate(time.Second).Add(-time.Millisecond))
		var mine []int64
		for i, to := range []*models.User{ada, bob, nil, bob, ada, bob, nil, bob} {
			n := notify(t, db, to, fmt.Sprint("n", i), time.Now())
			if n.InInbox(ada) {
				mine = append(mine, n.ID)
			}
		}
		require.False(t, old.InInbox(ada))
		got, through, err = log.InboxAfter(ctx, ada, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, mine, notificationIDs(got), "ada's, oldest first")
		assert.Equal(t, int64(9), through, "read through the head")

		got, through, err = log.InboxAfter(ctx, ada, mine[0], 2)
		require.NoError(t, err)
		assert.Equal(t, mine[1:3], notificationIDs(got), "a full page")
		assert.Equal(t, mine[2], through, "a full page is read through its last")
		got, through, err = log.InboxAfter(ctx, ada, mine[3], 2)
		require.NoError(t, err)
		assert.Empty(t, got)
		assert.Equal(t, int64(9), through)
	})
}

// TestUnreadNotificationCounts: the grouped count agrees with each user's
// own count, for any number of users (in several statements of 200), and
// says at which position of the stream it is exact.
func TestUnreadNotificationCounts(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		users := []*models.User{ada, bob}
		for i := range 250 {
			users = append(users, newUser(t, db, fmt.Sprint("user ", i)))
		}
		notify(t, db, nil, "to everyone", time.Now())
		notify(t, db, ada, "to ada", time.Now())
		notify(t, db, bob, "to bob", time.Now())
		last := notify(t, db, users[200], "to user 198", time.Now())
		_, err := db.MarkAllNotificationsRead(ctx, bob)
		require.NoError(t, err)

		before := db.Statements()
		counts, err := db.UnreadNotificationCounts(ctx, users)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), db.Statements()-before, "one statement per 200 users")
		require.Len(t, counts, len(users))
		for i, c := range counts {
			assert.Equal(t, users[i].ID, c.UserID)
			assert.Equal(t, unread(t, db, users[i]), c.Unread, "user %d", i)
			assert.Equal(t, last.ID, c.Head)
		}
		assert.Equal(t, 2, counts[0].Unread, "ada")
		assert.Equal(t, 0, counts[1].Unread, "bob read all")
	})
}

// TestNotificationQueryPlans: a replay and the unread counts read one
// inbox's notifications through idx_notifications_inbox, never by scanning
// the notifications table.
func TestNotificationQueryPlans(t *testing.T) {
	forEachInbox(t, func(t *testing.T, db *store.DB, ada, bob *models.User) {
		ctx := t.Context()
		// Mostly other users' notifications, as on a server with many: the
		// plans must not read them.
		to := []*models.User{nil, ada, bob}
		for i := range 17 {
			to = append(to, newUser(t, db, fmt.Sprint("user ", i)))
		}
		for i := range 400 {
			notify(t, db, to[i%len(to)], "n", time.Now())
		}
		since := ada.CreatedAt.Truncate(time.Second)
		plans := map[string]struct {
			query string
			args  []any
		}{
			"replay":        {store.InboxAfterQuery, []any{ada.ID, 3, 100, 3, since, 100, 100}},
			"unread counts": {fmt.Sprintf(store.UnreadCountsQuery, "SELECT ? AS user_id, ? AS since UNION ALL SELECT ?, ?"), []any{models.NotificationStream, ada.ID, since, bob.ID, since}},
		}
		if db.Dialect() == store.Postgres {
			p := plans["unread counts"]
			p.query = fmt.Sprintf(store.UnreadCountsQuery, "SELECT CAST(? AS BIGINT) AS user_id, CAST(? AS TIMESTAMPTZ) AS since UNION ALL SELECT ?, ?")
			plans["unread counts"] = p
		}
		for name, p := range plans {
			plan, err := db.QueryPlan(ctx, p.query, p.args...)
			require.NoError(t, err, name)
			t.Logf("%s:\n%s", name, plan)
			assert.Contains(t, plan, "idx_notifications_inbox", "%s uses the inbox index", name)
			assert.NotRegexp(t, `SCAN notifications|SCAN n\b|table=n type=ALL|table=notifications type=ALL|Seq Scan on notifications`, plan, "%s scans the table", name)
		}
	})
}
