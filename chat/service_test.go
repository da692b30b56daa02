package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// The Service tests run against real databases (SQLite, and MySQL when
// TEST_MYSQL_URL is set) and the in-process broker, in real time: every
// wait is for an event, with a deadline. That nothing was stored or
// announced is shown by what comes next: messages of a room are numbered
// without gaps and delivered in order.

// waitFor bounds every wait for an event.
const waitFor = 5 * time.Second

// env is the chat service as app wires it, with three users and the
// general room.
type env struct {
	db            *store.DB
	broker        *pubsubtest.Outage
	svc           *chat.Service
	ada, bob, cid *models.User
	general       *models.Room
}

// forEachBackend runs test once per database kind, in parallel subtests
// named after the dialect.
func forEachBackend(t *testing.T, test func(t *testing.T, dialect store.Dialect)) {
	t.Helper()
	t.Parallel()
	for _, dialect := range storetest.Backends {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			test(t, dialect)
		})
	}
}

// newEnv starts a Service with opts over a fresh database of dialect and
// the in-process broker behind an outage switch; the message streams poll
// every 50ms and users go offline at once unless opts say otherwise. All
// of it is closed when the test ends.
func newEnv(t *testing.T, dialect store.Dialect, opts chat.Options) *env {
	t.Helper()
	db := storetest.Open(t, dialect)
	broker := pubsubtest.NewOutage(mempubsub.New(0))
	t.Cleanup(func() { assert.NoError(t, broker.Close()) })
	e := startEnv(t, db, broker, opts)
	e.broker = broker
	return e
}

// startEnv is newEnv over db and broker.
func startEnv(t *testing.T, db *store.DB, broker pubsub.Broker, opts chat.Options) *env {
	t.Helper()
	if opts.Stream.PollInterval == 0 {
		opts.Stream.PollInterval = 50 * time.Millisecond
	}
	if opts.LeaveGrace == 0 {
		opts.LeaveGrace = -1
	}
	svc := chat.New(db, broker, opts)
	ctx, stop := context.WithCancel(context.Background())
	svc.Start(ctx)
	t.Cleanup(func() {
		svc.Close()
		stop()
	})
	e := &env{db: db, svc: svc}
	for _, u := range []struct {
		name string
		user **models.User
	}{{"ada", &e.ada}, {"bob", &e.bob}, {"cid", &e.cid}} { // ids in this order
		var err error
		*u.user, err = db.CreateUser(t.Context(), u.name)
		require.NoError(t, err)
	}
	rooms, _, err := svc.ListRooms(t.Context(), nil, "", nil, 10)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	e.general = rooms[0].Room
	return e
}

// roomNames returns the names of the rooms of u's room list (first 100),
// in order.
func (e *env) roomNames(t *testing.T, u *models.User) []string {
	t.Helper()
	rooms, _, err := e.svc.ListRooms(t.Context(), u, "", nil, 100)
	require.NoError(t, err)
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = r.Room.Name
		if r.Room.Direct {
			out[i] = fmt.Sprintf("direct:%d", r.Room.ID)
		}
	}
	return out
}

// view returns room id as u sees it.
func (e *env) view(t *testing.T, u *models.User, id int64) *chat.View {
	t.Helper()
	v, err := e.svc.Room(t.Context(), u, id)
	require.NoError(t, err)
	return v
}

// subscribe subscribes u to the messages of room id from now on, until the
// test ends.
func (e *env) subscribe(t *testing.T, u *models.User, id int64) <-chan *models.Message {
	t.Helper()
	c, err := e.svc.Subscribe(t.Context(), e.view(t, u, id), nil)
	require.NoError(t, err)
	return c
}

// watches are what one user watches of one room: its messages, its typing
// indicators, and their room list.
type watches struct {
	messages <-chan *models.Message
	typing   <-chan *models.TypingEvent
	rooms    <-chan *models.Room
}

// watch has u watch room id until the test ends.
func (e *env) watch(t *testing.T, u *models.User, id int64) watches {
	t.Helper()
	return watches{
		messages: e.subscribe(t, u, id),
		typing:   e.svc.WatchTyping(t.Context(), e.view(t, u, id)),
		rooms:    e.watchRooms(t, u),
	}
}

// watchRooms watches u's room list until the test ends, each room read as
// u sees it.
func (e *env) watchRooms(t *testing.T, u *models.User) <-chan *models.Room {
	return e.svc.WatchRooms(t.Context(), t.Context(), u)
}

// post posts text as u to room id.
func (e *env) post(t *testing.T, u *models.User, id int64, text string) *models.Message {
	t.Helper()
	m, err := e.svc.PostMessage(t.Context(), u, id, text, "")
	require.NoError(t, err, "post %q", text)
	return m
}

// history returns the texts of room id's messages, oldest first.
func (e *env) history(t *testing.T, id int64) []string {
	t.Helper()
	ms, err := e.svc.History(t.Context(), e.view(t, e.ada, id), 0, 100)
	require.NoError(t, err)
	out := make([]string, len(ms))
	for i, m := range ms {
		out[len(ms)-1-i] = m.Text
	}
	return out
}

// receive returns the next value of c, failing the test after waitFor.
func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v, ok := <-c:
		require.True(t, ok, "%s: the channel is closed", what)
		return v
	case <-time.After(waitFor):
		require.FailNow(t, "nothing received", what)
		var zero T
		return zero
	}
}

// clock is a settable clock for rate limits.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// onePerSecond is a limit of one a second, without bursts, on c.
func onePerSecond(c *clock) *ratelimit.Keyed {
	return ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 1, Burst: 1}, c.Now)
}

func TestPostMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		ctx := t.Context()
		bob := e.watch(t, e.bob, e.general.ID)
		require.NoError(t, e.svc.SetTyping(ctx, e.ada, e.general.ID, true))
		ev := receive(t, bob.typing, "typing")
		assert.Equal(t, []any{"ada", true}, []any{ev.User.Name, ev.Typing})

		m := e.post(t, e.ada, e.general.ID, "  hello \n")
		assert.Equal(t, []any{e.general.ID, int64(1), "hello", e.ada}, []any{m.RoomID, m.Seq, m.Text, m.Author})
		got := receive(t, bob.messages, "message")
		assert.Equal(t, m.ID(), got.ID())
		assert.Equal(t, "hello", got.Text)
		ev = receive(t, bob.typing, "typing")
		assert.Equal(t, []any{"ada", false}, []any{ev.User.Name, ev.Typing}, "posting ends the author's typing")
		assert.Equal(t, e.general.ID, receive(t, bob.rooms, "room list").ID, "the room list entry changed")

		assert.Equal(t, []string{"hello"}, e.history(t, e.general.ID))
		last, err := e.svc.LastMessages(ctx, []int64{e.general.ID})
		require.NoError(t, err)
		assert.Equal(t, "hello", last[e.general.ID].Text)
		assert.Equal(t, []*models.User{e.bob}, e.svc.Online(e.view(t, e.ada, e.general.ID)), "a subscriber is online")
	})
}

// TestDirectRoomsAreVisibleToTheirMembersOnly: to anyone but its members, a
// direct room is the same NOT_FOUND as a room that does not exist, for
// every use case.
func TestDirectRoomsAreVisibleToTheirMembersOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		ctx := t.Context()
		adaBob, err := e.svc.OpenDirectRoom(ctx, e.ada, e.bob.ID)
		require.NoError(t, err)
		for _, u := range []*models.User{e.ada, e.bob} {
			assert.Equal(t, adaBob, e.view(t, u, adaBob.ID).Room(), "%s sees it", u.Name)
			v, err := e.svc.Visible(ctx, adaBob, u)
			require.NoError(t, err)
			assert.Equal(t, adaBob, v.Room())
		}
		for _, room := range []int64{adaBob.ID, 999999} {
			// What the client sees: NOT_FOUND and the message, word for word
			// the same for a hidden room and a missing one.
			want := fmt.Sprintf("NOT_FOUND: room %d not found", room)
			for _, u := range []*models.User{nil, e.cid} {
				_, err := e.svc.Room(ctx, u, room)
				assert.Equal(t, want, seenByClient(err))
			}
			_, err := e.svc.PostMessage(ctx, e.cid, room, "let me in", "")
			assert.Equal(t, want, seenByClient(err), "post")
			assert.Equal(t, want, seenByClient(e.svc.SetTyping(ctx, e.cid, room, true)), "typing")
			_, err = e.svc.MarkRoomRead(ctx, e.cid, room)
			assert.Equal(t, want, seenByClient(err), "mark read")
		}
		for _, u := range []*models.User{nil, e.cid} {
			_, err := e.svc.Visible(ctx, adaBob, u)
			assert.Equal(t, fmt.Sprintf("NOT_FOUND: room %d not found", adaBob.ID), seenByClient(err))
		}
		assert.Empty(t, e.history(t, adaBob.ID), "nothing was posted")
		v, err := e.svc.Visible(ctx, e.general, nil)
		require.NoError(t, err, "a public room is everyone's")
		assert.Equal(t, e.general, v.Room())
	})
}

func TestOpenDirectRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		ctx := t.Context()
		ada, bob, cid := e.watchRooms(t, e.ada), e.watchRooms(t, e.bob), e.watchRooms(t, e.cid)
		room, err := e.svc.OpenDirectRoom(ctx, e.ada, e.bob.ID)
		require.NoError(t, err)
		assert.True(t, room.Direct)
		assert.Equal(t, room.ID, receive(t, ada, "ada's list").ID)
		assert.Equal(t, room.ID, receive(t, bob, "bob's list").ID)
		again, err := e.svc.OpenDirectRoom(ctx, e.bob, e.ada.ID)
		require.NoError(t, err)
		assert.Equal(t, room.ID, again.ID, "the same room from either side")
		members, err := e.svc.Members(ctx, []int64{room.ID, e.general.ID})
		require.NoError(t, err)
		assert.Equal(t, map[int64][]*models.User{room.ID: {e.ada, e.bob}}, members)

		_, err = e.svc.OpenDirectRoom(ctx, e.ada, e.ada.ID)
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
		assert.EqualError(t, err, "userId: a direct room needs another user")
		_, err = e.svc.OpenDirectRoom(ctx, e.ada, 999999)
		assert.Equal(t, models.NotFound, models.ErrorCode(err))

		public, err := e.svc.CreateRoom(ctx, e.bob, "later")
		require.NoError(t, err)
		assert.Equal(t, public.ID, receive(t, cid, "cid's list").ID, "cid was told of the public room only")
	})
}

func TestCreateRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		ctx := t.Context()
		lists := []<-chan *models.Room{e.watchRooms(t, e.ada), e.watchRooms(t, e.bob)}
		room, err := e.svc.CreateRoom(ctx, e.bob, "  Random ")
		require.NoError(t, err)
		assert.Equal(t, "Random", room.Name, "trimmed")
		for _, l := range lists {
			assert.Equal(t, room.ID, receive(t, l, "room list").ID, "every list has it")
		}
		for _, name := range []string{"", "  ", "random", strings.Repeat("r", models.MaxRoomNameLength+1), "a\tb"} {
			_, err := e.svc.CreateRoom(ctx, e.bob, name)
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "name %q: %v", name, err)
		}
		_, err = e.svc.MarkRoomRead(ctx, e.ada, e.general.ID)
		require.NoError(t, err)
		assert.Equal(t, []string{"Random", "general"}, e.roomNames(t, e.bob), "bob is in the room he created: first")
		assert.Equal(t, []string{"general", "Random"}, e.roomNames(t, e.ada), "ada is in general, which she read")
	})
}

// TestRoomRateLimit: creating public rooms and opening direct rooms anew
// draw on one budget per user; over it the caller gets RATE_LIMITED and
// nothing is stored or announced, other users create as before, reopening
// a direct room is free, and the budget refills with time.
func TestRoomRateLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		c := &clock{now: time.Unix(1000, 0)}
		perHour := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 2.0 / 3600, Burst: 2}, c.Now)
		e := newEnv(t, dialect, chat.Options{RoomRate: perHour})
		ctx := t.Context()
		bobsList := e.watchRooms(t, e.bob)
		_, err := e.svc.CreateRoom(ctx, e.ada, "one")
		require.NoError(t, err)
		adaBob, err := e.svc.OpenDirectRoom(ctx, e.ada, e.bob.ID)
		require.NoError(t, err)
		receive(t, bobsList, "bob's list")
		receive(t, bobsList, "bob's list")

		_, err = e.svc.CreateRoom(ctx, e.ada, "two")
		assert.Equal(t, "RATE_LIMITED: too many new rooms; try again later", seenByClient(err))
		_, err = e.svc.OpenDirectRoom(ctx, e.ada, e.cid.ID)
		assert.Equal(t, models.RateLimited, models.ErrorCode(err), "a new direct room counts")
		again, err := e.svc.OpenDirectRoom(ctx, e.ada, e.bob.ID)
		require.NoError(t, err, "reopening is free")
		assert.Equal(t, adaBob.ID, again.ID)
		_, err = e.svc.CreateRoom(ctx, e.ada, "")
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "an invalid name is refused first")
		assert.Equal(t, []string{fmt.Sprintf("direct:%d", adaBob.ID), "one", "general"}, e.roomNames(t, e.ada), "nothing stored")

		theirs, err := e.svc.CreateRoom(ctx, e.cid, "cid's")
		require.NoError(t, err, "another user's budget")
		assert.Equal(t, theirs.ID, receive(t, bobsList, "bob's list").ID, "the refused rooms were never announced")

		c.advance(30 * time.Minute)
		_, err = e.svc.CreateRoom(ctx, e.ada, "two")
		require.NoError(t, err, "refilled: one every half hour")
		_, err = e.svc.CreateRoom(ctx, e.ada, "three")
		assert.Equal(t, models.RateLimited, models.ErrorCode(err))
		assert.EqualValues(t, 3, perHour.Refused())
	})
}

// TestPostMessageValidates: invalid text is BAD_USER_INPUT, and neither
// stored nor announced.
func TestPostMessageValidates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		live := e.subscribe(t, e.bob, e.general.ID)
		tests := []struct{ name, text, errPart string }{
			{name: "empty", text: "", errPart: "must not be empty"},
			{name: "blank", text: " \n ", errPart: "must not be empty"},
			{name: "too long", text: strings.Repeat("m", models.MaxMessageLength+1), errPart: "the limit is 2000"},
			{name: "invalid UTF-8", text: "a\xffb", errPart: "UTF-8"},
		}
		for _, tt := range tests {
			m, err := e.svc.PostMessage(t.Context(), e.ada, e.general.ID, tt.text, "")
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: %v", tt.name, err)
			assert.ErrorContains(t, err, tt.errPart, tt.name)
			assert.Nil(t, m, tt.name)
		}
		e.post(t, e.ada, e.general.ID, "valid")
		got := receive(t, live, "message")
		assert.Equal(t, []any{int64(1), "valid"}, []any{got.Seq, got.Text}, "the first message delivered is the valid one")
		assert.Equal(t, []string{"valid"}, e.history(t, e.general.ID))
	})
}

// TestPostMessageIdempotent: a retry with the key of a message returns
// the first message and stores and announces nothing, without counting
// against the rate
// limit; the key with another text or room is BAD_USER_INPUT; another
// user's same key is theirs.
func TestPostMessageIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		c := &clock{now: time.Now()}
		limit := onePerSecond(c)
		e := newEnv(t, dialect, chat.Options{MessageRate: limit})
		ctx := t.Context()
		cid := e.watch(t, e.cid, e.general.ID)
		lobby, err := e.svc.CreateRoom(ctx, e.ada, "lobby")
		require.NoError(t, err)
		receive(t, cid.rooms, "the new room")

		first, err := e.svc.PostMessage(ctx, e.ada, e.general.ID, "hello", "k")
		require.NoError(t, err)
		assert.Equal(t, "hello", receive(t, cid.messages, "message").Text)
		assert.Equal(t, e.general.ID, receive(t, cid.rooms, "room list").ID)
		for range 3 {
			again, err := e.svc.PostMessage(ctx, e.ada, e.general.ID, "hello ", "k")
			require.NoError(t, err)
			assert.Equal(t, first.ID(), again.ID())
			assert.Equal(t, first.CreatedAt, again.CreatedAt)
			assert.Equal(t, first.Author.Name, again.Author.Name)
		}
		assert.Zero(t, limit.Refused(), "replays are not rate limited")

		for _, other := range []struct {
			room int64
			text string
		}{{e.general.ID, "hello!"}, {lobby.ID, "hello"}} {
			_, err = e.svc.PostMessage(ctx, e.ada, other.room, other.text, "k")
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%v", err)
		}
		theirs, err := e.svc.PostMessage(ctx, e.bob, e.general.ID, "hello", "k")
		require.NoError(t, err, "bob's k is not ada's")
		assert.Equal(t, int64(2), theirs.Seq)

		got := receive(t, cid.messages, "the next message")
		assert.Equal(t, []any{int64(2), "bob"}, []any{got.Seq, got.Author.Name}, "nothing was announced in between")
		assert.Equal(t, e.general.ID, receive(t, cid.rooms, "room list").ID)
		assert.Equal(t, []string{"hello", "hello"}, e.history(t, e.general.ID))
	})
}

// TestPostMessageRateLimited: a message the author's limit refuses is
// RATE_LIMITED, and neither stored nor announced; each user has a limit of
// their own.
func TestPostMessageRateLimited(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		c := &clock{now: time.Now()}
		limit := onePerSecond(c)
		e := newEnv(t, dialect, chat.Options{MessageRate: limit})
		live := e.subscribe(t, e.cid, e.general.ID)
		e.post(t, e.ada, e.general.ID, "one")
		m, err := e.svc.PostMessage(t.Context(), e.ada, e.general.ID, "two", "")
		assert.Nil(t, m)
		assert.Equal(t, models.RateLimited, models.ErrorCode(err))
		assert.EqualError(t, err, "too many messages; slow down")
		assert.Equal(t, uint64(1), limit.Refused())
		e.post(t, e.bob, e.general.ID, "bob's")
		c.advance(time.Second)
		e.post(t, e.ada, e.general.ID, "three")

		for i, want := range []string{"one", "bob's", "three"} {
			got := receive(t, live, want)
			assert.Equal(t, []any{int64(i + 1), want}, []any{got.Seq, got.Text})
		}
		assert.Equal(t, []string{"one", "bob's", "three"}, e.history(t, e.general.ID))
	})
}

// TestSetTyping: starting to type is limited per user, stopping never is;
// watchers see everyone's indicators but their own.
func TestSetTyping(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		start := time.Now()
		c := &clock{now: start}
		// Typing indicators go by the service's clock: real time, moved on
		// by what c is advanced.
		running := func() time.Time { return time.Now().Add(c.Now().Sub(start)) }
		e := newEnv(t, dialect, chat.Options{TypingRate: onePerSecond(c), Now: running})
		ctx := t.Context()
		bob := e.svc.WatchTyping(ctx, e.view(t, e.bob, e.general.ID))
		require.NoError(t, e.svc.SetTyping(ctx, e.ada, e.general.ID, true))
		err := e.svc.SetTyping(ctx, e.ada, e.general.ID, true)
		assert.Equal(t, models.RateLimited, models.ErrorCode(err))
		assert.EqualError(t, err, "too many typing events; send one every few seconds")
		require.NoError(t, e.svc.SetTyping(ctx, e.ada, e.general.ID, false), "stopping is never limited")
		require.NoError(t, e.svc.SetTyping(ctx, e.bob, e.general.ID, true))
		c.advance(time.Second)
		require.NoError(t, e.svc.SetTyping(ctx, e.ada, e.general.ID, true))

		for _, want := range []bool{true, false, true} {
			ev := receive(t, bob, "typing")
			assert.Equal(t, []any{"ada", want}, []any{ev.User.Name, ev.Typing}, "bob does not see his own")
		}
	})
}

func TestMarkRoomRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		ctx := t.Context()
		e.post(t, e.ada, e.general.ID, "one")
		e.post(t, e.ada, e.general.ID, "two")
		unread := func(u *models.User) int {
			n, err := e.svc.UnreadCounts(ctx, []models.RoomUser{{Room: e.general.ID, User: u.ID}})
			require.NoError(t, err)
			return n[models.RoomUser{Room: e.general.ID, User: u.ID}]
		}
		require.Equal(t, 2, unread(e.bob))
		tabs := []<-chan *models.Room{e.watchRooms(t, e.bob), e.watchRooms(t, e.bob)}
		room, err := e.svc.MarkRoomRead(ctx, e.bob, e.general.ID)
		require.NoError(t, err)
		assert.Equal(t, e.view(t, e.bob, e.general.ID).Room(), room, "the room, as active as its messages made it")
		assert.Equal(t, 0, unread(e.bob))
		assert.Equal(t, 2, unread(e.cid), "another user's count")
		for _, tab := range tabs {
			assert.Equal(t, e.general.ID, receive(t, tab, "bob's tab").ID, "every tab of bob's")
		}
	})
}

// TestSubscribersAreOnline: a signed-in subscriber of a room's messages or
// presence is online while the subscription lasts; an anonymous one is not
// counted.
func TestSubscribersAreOnline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		anonymous := e.view(t, nil, e.general.ID)
		_, err := e.svc.Subscribe(t.Context(), anonymous, nil)
		require.NoError(t, err)
		watch := e.svc.WatchPresence(t.Context(), anonymous)
		assert.Empty(t, receive(t, watch, "presence").Online, "an anonymous caller is not online")

		ctx, leave := context.WithCancel(t.Context())
		_, err = e.svc.Subscribe(ctx, e.view(t, e.ada, e.general.ID), nil)
		require.NoError(t, err)
		e.svc.WatchPresence(ctx, e.view(t, e.bob, e.general.ID))
		online := func() []*models.User { return e.svc.Online(anonymous) }
		require.Eventually(t, func() bool { return len(online()) == 2 }, waitFor, 10*time.Millisecond)
		assert.Equal(t, []*models.User{e.ada, e.bob}, online(), "in the order they came online")
		leave()
		require.Eventually(t, func() bool { return len(online()) == 0 }, waitFor, 10*time.Millisecond, "offline when their subscriptions end")
	})
}

// commitChecker is a broker that records, for each message it is asked to
// announce, whether the message was already committed at that moment.
type commitChecker struct {
	pubsub.Broker
	db *store.DB

	mu        sync.Mutex
	committed map[string]bool // message text → committed before it was announced
}

func (c *commitChecker) Publish(ctx context.Context, topic string, payload []byte) error {
	var m models.Message
	if roomID, ok := models.RoomOfStream(topic); ok && json.Unmarshal(payload, &m) == nil {
		page, err := c.db.MessagesBefore(ctx, roomID, m.Seq+1, 1)
		c.mu.Lock()
		c.committed[m.Text] = err == nil && len(page) == 1 && page[0].Seq == m.Seq
		c.mu.Unlock()
	}
	return c.Broker.Publish(ctx, topic, payload)
}

// topicCounter is a broker that counts what is published, by topic.
type topicCounter struct {
	pubsub.Broker
	mu sync.Mutex
	n  map[string]int
}

func (c *topicCounter) Publish(ctx context.Context, topic string, payload []byte) error {
	c.mu.Lock()
	c.n[topic]++
	c.mu.Unlock()
	return c.Broker.Publish(ctx, topic, payload)
}

// countedBroker returns a fresh SQLite store, the in-process broker, and
// the broker that counts what goes through it to the other, all closed when
// the test ends.
func countedBroker(t *testing.T) (*store.DB, *mempubsub.Broker, *topicCounter) {
	t.Helper()
	mem := mempubsub.New(0)
	t.Cleanup(func() { assert.NoError(t, mem.Close()) })
	return storetest.Open(t, store.SQLite), mem, &topicCounter{Broker: mem, n: map[string]int{}}
}

func (c *topicCounter) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[topic]
}

// TestPostMessageEndsOnlyTypingThatIsOn: a message ends its author's
// typing indicator on every replica, and sends nothing about typing when
// its author was not shown typing.
func TestPostMessageEndsOnlyTypingThatIsOn(t *testing.T) {
	db, _, broker := countedBroker(t)
	e := startEnv(t, db, broker, chat.Options{})
	bob := e.watch(t, e.bob, e.general.ID)
	for i := range 5 {
		e.post(t, e.ada, e.general.ID, fmt.Sprintf("quiet %d", i))
	}
	assert.Zero(t, broker.count("chat.typing"), "typing events for messages of an author who was not typing")

	require.NoError(t, e.svc.SetTyping(t.Context(), e.ada, e.general.ID, true))
	assert.True(t, receive(t, bob.typing, "typing").Typing)
	e.post(t, e.ada, e.general.ID, "typed")
	ev := receive(t, bob.typing, "typing")
	assert.Equal(t, []any{"ada", false}, []any{ev.User.Name, ev.Typing}, "posting ends the author's typing")
	assert.Equal(t, 2, broker.count("chat.typing"), "the start and the end")
}

// TestJoinStormIsAnnouncedInFewLists: when hundreds of users come online
// on one replica at once (its clients reconnecting), the other replicas
// learn all of them, from a few announcements: each names the room's whole
// local list, so one per join would be quadratic in bytes on the broker.
func TestJoinStormIsAnnouncedInFewLists(t *testing.T) {
	db, mem, counted := countedBroker(t)
	a := startEnv(t, db, counted, chat.Options{})
	b := chat.New(db, mem, chat.Options{LeaveGrace: -1})
	ctx, stop := context.WithCancel(context.Background())
	b.Start(ctx)
	t.Cleanup(func() {
		b.Close()
		stop()
	})
	const n = 300
	started := time.Now()
	before := counted.count("chat.presence")
	for i := range n {
		u, err := db.CreateUser(t.Context(), fmt.Sprintf("storm%d", i))
		require.NoError(t, err)
		a.svc.WatchPresence(t.Context(), a.view(t, u, a.general.ID))
	}
	storm := time.Since(started)
	seen, err := b.Room(t.Context(), nil, a.general.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(b.Online(seen)) == n }, waitFor, 10*time.Millisecond, "the other replica sees everyone online")
	lists := counted.count("chat.presence") - before
	most := int(storm/chat.DefaultPresenceInterval) + 3
	t.Logf("%d joins in %s announced in %d lists", n, storm.Round(time.Millisecond), lists)
	assert.LessOrEqual(t, lists, most, "announcements for %d joins in %s", n, storm)
}

// TestPostMessagePublishesAfterCommit: a message is announced once it is
// in the database, never before.
func TestPostMessagePublishesAfterCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		mem := mempubsub.New(0)
		t.Cleanup(func() { assert.NoError(t, mem.Close()) })
		broker := &commitChecker{Broker: mem, db: db, committed: map[string]bool{}}
		e := startEnv(t, db, broker, chat.Options{})
		live := e.subscribe(t, e.bob, e.general.ID)
		for _, text := range []string{"one", "two"} {
			e.post(t, e.ada, e.general.ID, text)
			assert.Equal(t, text, receive(t, live, text).Text)
		}
		broker.mu.Lock()
		defer broker.mu.Unlock()
		assert.Equal(t, map[string]bool{"one": true, "two": true}, broker.committed, "each message was committed when announced")
	})
}

// TestPostMessageWhileTheBrokerIsDown: a message whose announcement fails
// is posted all the same (it is committed): subscribers get it from the
// database, and this replica's room lists and typing indicators are told
// directly.
func TestPostMessageWhileTheBrokerIsDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, chat.Options{})
		bob := e.watch(t, e.bob, e.general.ID)
		e.broker.SetDown(true)
		defer e.broker.SetDown(false)
		require.NoError(t, e.svc.SetTyping(t.Context(), e.ada, e.general.ID, true))
		m := e.post(t, e.ada, e.general.ID, "during the outage")
		assert.Equal(t, int64(1), m.Seq)
		assert.Equal(t, []string{"during the outage"}, e.history(t, e.general.ID), "committed")
		assert.Equal(t, "during the outage", receive(t, bob.messages, "message").Text, "delivered from the database")
		for _, want := range []bool{true, false} {
			assert.Equal(t, want, receive(t, bob.typing, "typing").Typing)
		}
		assert.Equal(t, e.general.ID, receive(t, bob.rooms, "room list").ID)
	})
}

// seenByClient is what a client is shown of err: its code and message.
func seenByClient(err error) string {
	if e, ok := models.CodedError(err); ok {
		return string(e.Code) + ": " + e.Message
	}
	return "INTERNAL"
}
