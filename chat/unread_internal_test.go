package chat

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// TestRoomCountsMeetTheStream: a count read from the database is exact at
// a position of the room's stream; the messages applied while it was read
// are added to it if they came after that position (the user's own
// zeroing it), and not again if they did not. A count that started before
// a read was announced is served but not kept.
func TestRoomCountsMeetTheStream(t *testing.T) {
	const room, ada, bob = 7, 1, 2
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	msg := func(seq, author int64) *models.Message {
		return &models.Message{RoomID: room, Seq: seq, AuthorID: author, CreatedAt: created.Add(time.Hour)}
	}
	messages := make(chan *models.Message)
	var (
		during func() // runs while the count is read
		result int    // what the read finds
		head   int64  // the position it is exact at
		reads  int    // how many reads ran
	)
	rc := newRoomCounts(func(context.Context, int64) (<-chan *models.Message, error) { return messages, nil },
		func(_ context.Context, _ int64, users []int64) ([]store.RoomUnread, error) {
			reads++
			if during != nil {
				during()
				during = nil
			}
			var out []store.RoomUnread
			for _, u := range users {
				out = append(out, store.RoomUnread{UserID: u, Unread: result, Since: created, Head: head})
			}
			return out, nil
		}, nil)
	defer close(messages)
	defer rc.watch(ada)()
	defer rc.watch(bob)()
	ctx := t.Context()
	// apply hands m to the room's follower and waits until it is applied.
	apply := func(m *models.Message) {
		rc.mu.Lock()
		moved := rc.rooms[room].moved
		rc.mu.Unlock()
		messages <- m
		<-moved
	}
	get := func(upTo int64) map[int64]roomCount {
		t.Helper()
		users := []int64{ada, bob}
		got, err := rc.get(ctx, room, users, upTo)
		require.NoError(t, err)
		require.Len(t, got, len(users))
		return map[int64]roomCount{ada: got[0], bob: got[1]}
	}

	_, err := rc.follow(ctx, room) // this replica follows the room from position 3
	require.NoError(t, err)
	// The read sees the stream up to 5; 5 (bob's), 6 (ada's) and 7 (bob's)
	// are applied while it runs.
	result, head = 2, 5
	during = func() { apply(msg(4, bob)); apply(msg(5, bob)); apply(msg(6, ada)); apply(msg(7, bob)) }
	got := get(7)
	assert.Equal(t, 1, got[ada].unread, "ada: her 6 read the room, then 7")
	assert.True(t, got[ada].joined, "posting joins the room")
	assert.Equal(t, 0, got[bob].unread, "bob: his 7 read the room")
	assert.Equal(t, 1, reads)

	apply(msg(8, ada))
	got = get(8)
	assert.Equal(t, 0, got[ada].unread)
	assert.Equal(t, 1, got[bob].unread, "8 applied")
	assert.Equal(t, 1, reads, "kept: no read")

	// bob reads; a count that started before the announcement is served
	// but not kept, the next one is.
	result, head = 0, 8
	rc.forget(room, []int64{bob})
	during = func() { rc.forget(room, []int64{bob}) } // read again, during the count
	got = get(8)
	assert.Equal(t, 0, got[bob].unread)
	assert.Equal(t, 2, reads)
	get(8)
	assert.Equal(t, 3, reads, "not kept: read again")
	got = get(8)
	assert.Equal(t, 3, reads, "kept")
	assert.Equal(t, 0, got[bob].unread)
	apply(msg(9, ada))
	assert.Equal(t, 1, get(9)[bob].unread)
}

// TestRoomCountsFollowNoRoomForNobody: counting a room for users none of
// whom watches here (a shared room-list watcher replaying a change for a
// list whose subscriber has gone) answers the counts and leaves no
// follower of the room's stream behind; for a watcher, it stays.
func TestRoomCountsFollowNoRoomForNobody(t *testing.T) {
	const room, ada = 7, 1
	followed := 0
	rc := newRoomCounts(func(ctx context.Context, _ int64) (<-chan *models.Message, error) {
		followed++
		c := make(chan *models.Message)
		context.AfterFunc(ctx, func() { close(c) })
		return c, nil
	}, func(_ context.Context, _ int64, users []int64) ([]store.RoomUnread, error) {
		out := make([]store.RoomUnread, len(users))
		for i, u := range users {
			out[i] = store.RoomUnread{UserID: u, Unread: 3}
		}
		return out, nil
	}, nil)
	got, err := rc.get(t.Context(), room, []int64{ada}, 0)
	require.NoError(t, err)
	assert.Equal(t, 3, got[0].unread)
	rc.mu.Lock()
	assert.Nil(t, rc.rooms[room], "no follower for nobody")
	rc.mu.Unlock()

	defer rc.watch(ada)()
	_, err = rc.get(t.Context(), room, []int64{ada}, 0)
	require.NoError(t, err)
	rc.mu.Lock()
	assert.NotNil(t, rc.rooms[room], "followed for ada, who watches")
	rc.mu.Unlock()
	assert.Equal(t, 2, followed)
}

// TestRoomCountsCostLittlePerWatcher: reading the kept counts of a
// room's 8,000 watchers for a change costs a few bytes a watcher (one
// slice of their counts), not a map entry each: a busy room reads them at
// every message.
func TestRoomCountsCostLittlePerWatcher(t *testing.T) {
	const room, n = 7, 8000
	messages := make(chan *models.Message)
	defer close(messages)
	rc := newRoomCounts(func(context.Context, int64) (<-chan *models.Message, error) { return messages, nil },
		func(_ context.Context, _ int64, users []int64) ([]store.RoomUnread, error) {
			out := make([]store.RoomUnread, len(users))
			for i, u := range users {
				out[i] = store.RoomUnread{UserID: u, Unread: int(u % 5), Joined: u%2 == 0}
			}
			return out, nil
		}, nil)
	users := make([]int64, n)
	for i := range users {
		users[i] = int64(i + 1)
		defer rc.watch(users[i])()
	}
	ctx := t.Context()
	_, err := rc.get(ctx, room, users, 0) // counts and keeps them all
	require.NoError(t, err)

	perWatcher := math.Inf(1)
	var got []roomCount
	for range 3 { // the least of three: another goroutine may allocate meanwhile
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err = rc.get(ctx, room, users, 0)
		runtime.ReadMemStats(&after)
		require.NoError(t, err)
		perWatcher = min(perWatcher, float64(after.TotalAlloc-before.TotalAlloc)/n)
	}
	t.Logf("the kept counts of %d watchers: %.1f bytes a watcher", n, perWatcher)
	assert.Less(t, perWatcher, 24.0) // a map of the pairs by user came to 148
	require.Len(t, got, n)
	for i, c := range got {
		assert.Equal(t, roomCount{unread: int(users[i] % 5), joined: users[i]%2 == 0}, c)
	}
}
