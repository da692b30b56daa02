package chat_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
)

// TestMain fails the package when a test leaves goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tests run inside synctest bubbles: time is virtual, and
// synctest.Wait lets every goroutine of the package under test run until it
// blocks, so "nothing arrives" is a certainty rather than a timeout.

var (
	ada = &models.User{ID: 1, Name: "ada"}
	bob = &models.User{ID: 2, Name: "bob"}
	cid = &models.User{ID: 3, Name: "cid"}
)

// next returns the value ch holds once everything else has settled, and
// fails when there is none or ch is closed.
func next[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	synctest.Wait()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "the channel is closed")
		return v
	default:
		require.FailNow(t, "nothing was sent")
		panic("unreachable")
	}
}

// quiet checks that ch has nothing to deliver once everything else has
// settled.
func quiet[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	synctest.Wait()
	select {
	case v, ok := <-ch:
		if ok {
			assert.Fail(t, "unexpected value", "%+v", v)
		} else {
			assert.Fail(t, "the channel is closed")
		}
	default:
	}
}

// closed checks that ch is closed once everything else has settled (after
// draining what it still holds).
func closed[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	synctest.Wait()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			assert.Fail(t, "the channel is still open")
			return
		}
	}
}

// names returns the names of users, in order.
func names(users []*models.User) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.Name)
	}
	return out
}

// online reads the next presence of room and returns who is in it.
func online(t *testing.T, ch <-chan *models.Presence, room int64) []string {
	t.Helper()
	p := next(t, ch)
	assert.Equal(t, room, p.RoomID)
	return names(p.Online)
}

// tab is one subscription of a user: it joins until leave is called.
type tab struct{ leave context.CancelFunc }

func join(t *testing.T, p *chat.Presence, room int64, u *models.User) tab {
	ctx, cancel := context.WithCancel(t.Context())
	p.Join(ctx, room, u)
	return tab{leave: cancel}
}

func TestPresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		w := p.Watch(t.Context(), 1)
		assert.Empty(t, online(t, w, 1), "nobody yet")

		steps := []struct {
			name string
			do   func() tab
			want []string // nil: no event
			now  []string
		}{
			{name: "ada joins", do: func() tab { return join(t, p, 1, ada) }, want: []string{"ada"}, now: []string{"ada"}},
			{name: "bob joins", do: func() tab { return join(t, p, 1, bob) }, want: []string{"ada", "bob"}, now: []string{"ada", "bob"}},
			{name: "ada opens a second tab", do: func() tab { return join(t, p, 1, ada) }, now: []string{"ada", "bob"}},
			{name: "cid joins another room", do: func() tab { return join(t, p, 2, cid) }, now: []string{"ada", "bob"}},
		}
		tabs := make([]tab, len(steps))
		for i, s := range steps {
			tabs[i] = s.do()
			if s.want != nil {
				assert.Equal(t, s.want, online(t, w, 1), s.name)
			}
			quiet(t, w)
			assert.Equal(t, s.now, names(p.Online(1)), s.name)
		}

		tabs[0].leave() // ada's first tab: the second keeps her online
		quiet(t, w)
		assert.Equal(t, []string{"ada", "bob"}, names(p.Online(1)))
		tabs[2].leave()
		assert.Equal(t, []string{"bob"}, online(t, w, 1), "ada's last tab closed")
		join(t, p, 1, ada)
		assert.Equal(t, []string{"bob", "ada"}, online(t, w, 1), "in the order they came back")
		tabs[1].leave()
		assert.Equal(t, []string{"ada"}, online(t, w, 1))
		assert.Equal(t, []string{"cid"}, names(p.Online(2)))
		quiet(t, w)
	})
}

func TestPresenceWatchStartsWithTheCurrentList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		join(t, p, 7, bob)
		join(t, p, 7, ada)
		first, second := p.Watch(t.Context(), 7), p.Watch(t.Context(), 7)
		for _, w := range []<-chan *models.Presence{first, second} {
			assert.Equal(t, []string{"bob", "ada"}, online(t, w, 7))
			quiet(t, w)
		}
		join(t, p, 7, cid)
		for _, w := range []<-chan *models.Presence{first, second} {
			assert.Equal(t, []string{"bob", "ada", "cid"}, online(t, w, 7), "every watcher gets the change")
		}
	})
}

func TestPresenceSlowWatcherGetsTheLatestList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		w := p.Watch(t.Context(), 1)
		synctest.Wait() // the watcher holds the first list, unread
		tabs := []tab{join(t, p, 1, ada), join(t, p, 1, bob), join(t, p, 1, cid)}
		tabs[0].leave()
		// Join and leave never waited for the reader; it skips to the end.
		assert.Empty(t, online(t, w, 1), "the first list")
		assert.Equal(t, []string{"bob", "cid"}, online(t, w, 1), "the newest list, the ones between skipped")
		quiet(t, w)
	})
}

func TestPresenceOnlineIsACopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		assert.NotNil(t, p.Online(1), "an empty list, not null")
		assert.Empty(t, p.Online(1))
		join(t, p, 1, ada)
		got := p.Online(1)
		got[0] = bob
		assert.Equal(t, []string{"ada"}, names(p.Online(1)))
	})
}

func TestPresenceEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		ctx, cancel := context.WithCancel(t.Context())
		w := p.Watch(ctx, 1)
		other := p.Watch(t.Context(), 1)
		online(t, w, 1)
		online(t, other, 1)

		cancel()
		closed(t, w)
		join(t, p, 1, ada) // must not reach the closed watcher
		assert.Equal(t, []string{"ada"}, online(t, other, 1), "the other watcher goes on")

		ended, end := context.WithCancel(t.Context())
		end()
		p.Join(ended, 1, bob) // a subscription that ended at once
		synctest.Wait()
		assert.Equal(t, []string{"ada"}, names(p.Online(1)))
	})
}

// TestPresenceLeaveGrace: a user whose last subscription ends stays online
// for the grace period, and one who comes back within it (a reload, a
// reconnect) never shows as offline.
func TestPresenceLeaveGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 2 * time.Second
		p := chat.NewPresence(grace, 0)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w := p.Watch(ctx, 1)
		assert.Empty(t, online(t, w, 1))

		reload := join(t, p, 1, ada)
		assert.Equal(t, []string{"ada"}, online(t, w, 1))
		reload.leave()
		time.Sleep(grace - time.Millisecond)
		quiet(t, w)
		back := join(t, p, 1, ada)
		time.Sleep(2 * grace)
		quiet(t, w) // the reload never showed
		assert.Equal(t, []string{"ada"}, names(p.Online(1)))

		back.leave()
		time.Sleep(grace - time.Millisecond)
		quiet(t, w)
		assert.Equal(t, []string{"ada"}, names(p.Online(1)), "still online during the grace period")
		time.Sleep(time.Millisecond)
		assert.Empty(t, online(t, w, 1), "offline exactly when the grace period ends")
	})
}

// TestPresenceRemoteReplicas: other replicas' users join the list after
// this replica's, once each; a replica's part goes when it expires, when a
// full announcement leaves a room out, or when it says goodbye.
func TestPresenceRemoteReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := chat.NewPresence(0, 0)
		w := p.Watch(t.Context(), 1)
		assert.Empty(t, online(t, w, 1))
		join(t, p, 1, ada)
		assert.Equal(t, []string{"ada"}, online(t, w, 1))

		exp := time.Now().Add(15 * time.Second)
		p.ApplyRemote("r2", map[int64][]*models.User{1: {bob, ada}}, false, exp)
		assert.Equal(t, []string{"ada", "bob"}, online(t, w, 1), "ada counts once, wherever she is online")
		p.ApplyRemote("r3", map[int64][]*models.User{1: {cid}, 2: {bob}}, true, exp)
		assert.Equal(t, []string{"ada", "bob", "cid"}, online(t, w, 1))
		assert.Equal(t, []string{"bob"}, names(p.Online(2)))

		p.ApplyRemote("r3", map[int64][]*models.User{2: {bob}}, true, exp)
		assert.Equal(t, []string{"ada", "bob"}, online(t, w, 1), "a full announcement without the room removes its users there")
		p.ApplyRemote("r3", map[int64][]*models.User{2: {bob}}, true, exp)
		quiet(t, w) // nothing changed, nothing sent

		p.ForgetRemote(exp.Add(-time.Second), "")
		quiet(t, w)
		p.ForgetRemote(exp.Add(time.Second), "")
		assert.Equal(t, []string{"ada"}, online(t, w, 1), "an expired replica's users go")
		assert.Empty(t, names(p.Online(2)))

		p.ApplyRemote("r2", map[int64][]*models.User{1: {bob}}, false, time.Now().Add(time.Hour))
		assert.Equal(t, []string{"ada", "bob"}, online(t, w, 1))
		p.ForgetRemote(time.Now(), "r2")
		assert.Equal(t, []string{"ada"}, online(t, w, 1), "a replica saying goodbye takes its users at once")
	})
}

// TestPresenceDirtyRooms: local changes are reported for the hub to
// announce, once per room, with the room's local list.
func TestPresenceDirtyRooms(t *testing.T) {
	p := chat.NewPresence(0, 0)
	ctx, cancel := context.WithCancel(t.Context())
	p.Join(ctx, 1, ada)
	p.Join(t.Context(), 2, bob)
	select {
	case <-p.Dirty():
	default:
		t.Fatal("no signal")
	}
	assert.Equal(t, map[int64][]*models.User{1: {ada}, 2: {bob}}, p.TakeDirty())
	assert.Empty(t, p.TakeDirty())
	cancel()
	require.Eventually(t, func() bool { return len(p.Local()[1]) == 0 }, time.Second, time.Millisecond)
	assert.Equal(t, map[int64][]*models.User{1: {}}, p.TakeDirty(), "an emptied room is reported with an empty list")
	assert.Equal(t, map[int64][]*models.User{2: {bob}}, p.Local())
}

// TestPresenceChangesWithinAnIntervalGoOutTogether: a change in a quiet
// room is sent at once; the changes that follow within the interval go out
// as one list at its end, the list as it is then, and none when it ends as
// it was.
func TestPresenceChangesWithinAnIntervalGoOutTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 500 * time.Millisecond
		p := chat.NewPresence(0, interval)
		w := p.Watch(t.Context(), 1)
		assert.Empty(t, online(t, w, 1))

		first := join(t, p, 1, ada)
		assert.Equal(t, []string{"ada"}, online(t, w, 1), "a quiet room's change goes out at once")
		join(t, p, 1, bob)
		join(t, p, 1, cid)
		first.leave()
		quiet(t, w)
		assert.Equal(t, []string{"bob", "cid"}, names(p.Online(1)), "the list itself is current")
		time.Sleep(interval)
		assert.Equal(t, []string{"bob", "cid"}, online(t, w, 1), "three changes, one list: the last")
		quiet(t, w)

		// A change undone within the interval sends nothing.
		time.Sleep(interval)
		dan := join(t, p, 1, &models.User{ID: 4, Name: "dan"})
		assert.Equal(t, []string{"bob", "cid", "dan"}, online(t, w, 1), "an interval after the last list: at once")
		again := join(t, p, 1, ada)
		again.leave()
		time.Sleep(interval)
		quiet(t, w)
		dan.leave()
		time.Sleep(interval)
		assert.Equal(t, []string{"bob", "cid"}, online(t, w, 1))
	})
}
