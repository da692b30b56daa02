package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
	"github.com/switchboardhq/switchboard/stream"
)

// forEachStore runs test in parallel on a fresh store of each database kind.
func forEachStore(t *testing.T, test func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) { test(t, storetest.Open(t, dialect)) })
}

// MessageLog is what stream.Feed reads room streams from.
var _ stream.Source[*models.Message] = store.MessageLog{}

// newRoom creates a public room named name.
func newRoom(tb testing.TB, db *store.DB, name string) *models.Room {
	tb.Helper()
	r, err := db.CreateRoom(context.Background(), name, 0, time.Now())
	require.NoError(tb, err, "create room %q", name)
	return r
}

// openDirect opens the direct room of a and b.
func openDirect(tb testing.TB, db *store.DB, a, b *models.User) *models.Room {
	tb.Helper()
	r, _, err := db.OpenDirectRoom(context.Background(), a, b, time.Now())
	require.NoError(tb, err, "open the direct room of %d and %d", a.ID, b.ID)
	return r
}

// say posts text by author to room at now.
func say(tb testing.TB, db *store.DB, room *models.Room, author *models.User, text string, now time.Time) *models.Message {
	tb.Helper()
	m, _, err := db.CreateMessage(context.Background(), room, author, text, at(now), nil)
	require.NoError(tb, err, "post %q", text)
	return m
}

// at is a clock stopped at t.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// chatter posts n messages by author to room, texts "message 1"…, and
// returns them.
func chatter(tb testing.TB, db *store.DB, room *models.Room, author *models.User, n int) []*models.Message {
	tb.Helper()
	out := make([]*models.Message, n)
	for i := range n {
		out[i] = say(tb, db, room, author, fmt.Sprintf("message %d", i+1), time.Now())
	}
	return out
}

// each returns f of every element of xs, in order.
func each[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// seqs returns the positions of messages, in order.
func seqs(ms []*models.Message) []int64 {
	return each(ms, func(m *models.Message) int64 { return m.Seq })
}

// roomNames returns the names of rooms, in order; a direct room shows as
// "direct:<id>".
func roomNames(rooms []*models.Room) []string {
	return each(rooms, func(r *models.Room) string {
		if r.Direct {
			return fmt.Sprintf("direct:%d", r.ID)
		}
		return r.Name
	})
}

// userNames returns the names of users, in order.
func userNames(users []*models.User) []string {
	return each(users, func(u *models.User) string { return u.Name })
}

// assertMembers checks the member list of room.
func assertMembers(t *testing.T, db *store.DB, roomID int64, want ...*models.User) {
	t.Helper()
	all, err := db.RoomMembers(t.Context(), []int64{roomID})
	require.NoError(t, err)
	members := all[roomID]
	if len(want) == 0 {
		assert.Empty(t, members, "members of room %d", roomID)
		return
	}
	assert.Equal(t, want, members, "members of room %d", roomID)
}

// twoReplicas opens a fresh database twice, as two server processes would.
func twoReplicas(t *testing.T, dialect store.Dialect) []*store.DB {
	t.Helper()
	url := storetest.URL(t, dialect)
	return []*store.DB{openURL(t, url), openURL(t, url)}
}

// together runs f(0)…f(n-1) in goroutines released at the same moment, and
// waits for them.
func together(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// requireCode checks that err carries the domain code want.
func requireCode(tb testing.TB, want models.Code, err error) {
	tb.Helper()
	require.Error(tb, err)
	require.Equal(tb, want, models.ErrorCode(err), "error %q", err)
}

func TestGeneralRoom(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		ctx := t.Context()
		replicas := twoReplicas(t, dialect) // the second migrates the database again
		db := replicas[0]
		require.NoError(t, db.Migrate(ctx), "third migration")
		for _, s := range replicas {
			rooms := listAll(t, s, 0)
			require.Equal(t, []string{models.GeneralRoom}, roomNames(rooms), "a fresh database has exactly one room")
			assert.False(t, rooms[0].Direct)
			got, err := s.RoomFor(ctx, rooms[0].ID, 0)
			require.NoError(t, err, "anyone sees the general room")
			assert.Equal(t, rooms[0], got)
		}
		_, err := db.CreateRoom(ctx, "General", 0, time.Now())
		requireCode(t, models.BadUserInput, err)
	})
}

func TestCreateRoom(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		now := time.Date(2025, 3, 30, 1, 59, 59, 123_456_789, time.FixedZone("CEST", 2*3600))
		tests := []struct {
			name     string
			roomName string
			wantErr  bool
		}{
			{name: "new name", roomName: "random"},
			{name: "accents and emoji", roomName: "Café 🚀"},
			{name: "quotes and wildcards", roomName: `it's "100%" _fine_`},
			{name: "taken, same case", roomName: "random", wantErr: true},
			{name: "taken, other case", roomName: "RANDOM", wantErr: true},
			{name: "taken, non-ASCII other case", roomName: "CAFÉ 🚀", wantErr: true},
			{name: "the general room", roomName: "GENERAL", wantErr: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := db.CreateRoom(ctx, tt.roomName, 0, now)
				if tt.wantErr {
					requireCode(t, models.BadUserInput, err)
					assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.roomName))
					assert.Nil(t, r)
					return
				}
				require.NoError(t, err)
				assert.Positive(t, r.ID)
				assert.Equal(t, tt.roomName, r.Name)
				assert.False(t, r.Direct)
				assert.Equal(t, time.UTC, r.CreatedAt.Location())
				assert.True(t, r.CreatedAt.Equal(now.Truncate(time.Millisecond)), "CreatedAt %v", r.CreatedAt)
				assert.Equal(t, r.CreatedAt, r.ActiveAt, "a new room's activity is its creation")

				got, err := db.Room(ctx, r.ID)
				require.NoError(t, err)
				assert.Equal(t, r, got)
			})
		}
		rooms := listAll(t, db, 0)
		assert.Len(t, rooms, 4, "rooms %v: a refused name left a room behind", roomNames(rooms))
	})
}

func TestRoomFor(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada, bob, eve := newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "eve")
		public := newRoom(t, db, "random")
		direct := openDirect(t, db, ada, bob)
		missing := direct.ID + 100
		tests := []struct {
			name   string
			roomID int64
			userID int64
			want   *models.Room // nil: NOT_FOUND
		}{
			{name: "public room, anonymous", roomID: public.ID, userID: 0, want: public},
			{name: "public room, signed in", roomID: public.ID, userID: eve.ID, want: public},
			{name: "direct room, the member who opened it", roomID: direct.ID, userID: ada.ID, want: direct},
			{name: "direct room, the other member", roomID: direct.ID, userID: bob.ID, want: direct},
			{name: "direct room, another user", roomID: direct.ID, userID: eve.ID},
			{name: "direct room, anonymous", roomID: direct.ID, userID: 0},
			{name: "direct room, a user that does not exist", roomID: direct.ID, userID: eve.ID + 100},
			{name: "missing room, anonymous", roomID: missing, userID: 0},
			{name: "missing room, signed in", roomID: missing, userID: ada.ID},
			{name: "room 0", roomID: 0, userID: ada.ID},
		}
		// RoomToWrite answers the same, the first time from the database
		// and then from what it kept of the room; members are whom a
		// write announces to.
		lookups := map[string]func(ctx context.Context, id, userID int64) (*models.Room, error){
			"RoomFor": db.RoomFor,
			"RoomToWrite": func(ctx context.Context, id, userID int64) (*models.Room, error) {
				room, members, err := db.RoomToWrite(ctx, id, userID)
				if room != nil && room.Direct {
					assert.Equal(t, []int64{ada.ID, bob.ID}, members, "a direct room's members")
				} else {
					assert.Nil(t, members, "a public room announces to everyone")
				}
				return room, err
			},
		}
		for _, lookup := range []string{"RoomFor", "RoomToWrite", "RoomToWrite"} {
			for _, tt := range tests {
				t.Run(lookup+"/"+tt.name, func(t *testing.T) {
					got, err := lookups[lookup](t.Context(), tt.roomID, tt.userID)
					if tt.want != nil {
						require.NoError(t, err)
						assert.Equal(t, tt.want, got)
						return
					}
					requireCode(t, models.NotFound, err)
					assert.Nil(t, got)
					// A hidden room must not be told apart from a missing one:
					// the client sees the same code and message, word for word
					// (the log's Error text names the cause, a missing row).
					coded, _ := models.CodedError(err)
					assert.Equal(t, fmt.Sprintf("room %d not found", tt.roomID), coded.Message)
				})
			}
		}
	})
}

// A write to a room reads the room once per process: what it checks never
// changes. A room that was missing is read again, as a later room may take
// its id.
func TestRoomToWriteReadsARoomOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob, eve := newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "eve")
		public := newRoom(t, db, "random")
		direct := openDirect(t, db, ada, bob)
		for _, room := range []*models.Room{public, direct} {
			_, _, err := db.RoomToWrite(ctx, room.ID, ada.ID)
			require.NoError(t, err)
		}
		before := db.Statements()
		for range 10 {
			for _, room := range []*models.Room{public, direct} {
				_, _, err := db.RoomToWrite(ctx, room.ID, ada.ID)
				require.NoError(t, err)
			}
			_, _, err := db.RoomToWrite(ctx, direct.ID, eve.ID)
			requireCode(t, models.NotFound, err)
		}
		assert.Zero(t, db.Statements()-before, "statements for 30 writes to rooms read before")

		// A read of a direct room takes its facts from that read: its row
		// once, its members once, and a write after it reads nothing.
		fresh := openDirect(t, db, bob, eve)
		before = db.Statements()
		_, err := db.RoomFor(ctx, fresh.ID, bob.ID)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), db.Statements()-before, "statements of a first read of a direct room")
		_, _, err = db.RoomToWrite(ctx, fresh.ID, eve.ID)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), db.Statements()-before, "a write after a read reads nothing")

		next := newRoom(t, db, "next")
		before = db.Statements()
		_, _, err = db.RoomToWrite(ctx, next.ID+1, ada.ID)
		requireCode(t, models.NotFound, err)
		_, _, err = db.RoomToWrite(ctx, next.ID+1, ada.ID)
		requireCode(t, models.NotFound, err)
		assert.Equal(t, uint64(2), db.Statements()-before, "a missing room is read each time")
		later := newRoom(t, db, "later")
		require.Equal(t, next.ID+1, later.ID)
		got, _, err := db.RoomToWrite(ctx, later.ID, ada.ID)
		require.NoError(t, err, "a room made after its id was missing")
		assert.Equal(t, "later", got.Name)
	})
}

func TestOpenDirectRoom(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob, cid := newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "cid")
		now := time.Date(2024, 2, 29, 23, 59, 59, 999_999_999, time.FixedZone("PST", -8*3600))

		first, created, err := db.OpenDirectRoom(ctx, ada, bob, now)
		require.NoError(t, err)
		assert.True(t, created, "first open")
		assert.True(t, first.Direct)
		assert.Empty(t, first.Name, "a direct room's name depends on who looks")
		assert.True(t, first.CreatedAt.Equal(now.Truncate(time.Millisecond)), "CreatedAt %v", first.CreatedAt)
		assert.Equal(t, time.UTC, first.CreatedAt.Location())

		tests := []struct {
			name        string
			a, b        *models.User
			wantSame    bool
			wantCreated bool
		}{
			{name: "again from the same side", a: ada, b: bob, wantSame: true},
			{name: "from the other side", a: bob, b: ada, wantSame: true},
			{name: "another pair", a: ada, b: cid, wantCreated: true},
			{name: "the other pair from the other side", a: cid, b: ada, wantCreated: false},
		}
		var other *models.Room
		for _, tt := range tests {
			room, created, err := db.OpenDirectRoom(ctx, tt.a, tt.b, time.Now())
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.wantCreated, created, "%s: created", tt.name)
			if tt.wantSame {
				assert.Equal(t, first, room, "%s: another room than the first", tt.name)
				continue
			}
			assert.NotEqual(t, first.ID, room.ID, tt.name)
			if other == nil {
				other = room
			}
			assert.Equal(t, other.ID, room.ID, tt.name)
		}

		assertMembers(t, db, first.ID, ada, bob)
		assertMembers(t, db, other.ID, ada, cid)
		assertMembers(t, db, newRoom(t, db, "random").ID) // a public room has no member list
	})
}

func TestOpenDirectRoomConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		replicas := twoReplicas(t, dialect)
		const pairs = 8
		type result struct {
			room    *models.Room
			created bool
		}
		users := make([][2]*models.User, pairs)
		for i := range users {
			users[i] = [2]*models.User{newUser(t, replicas[0], fmt.Sprintf("a%d", i)), newUser(t, replicas[0], fmt.Sprintf("b%d", i))}
		}
		results := make([][2]result, pairs)
		together(2*pairs, func(n int) {
			i, side := n/2, n%2
			pair := users[i]
			room, created, err := replicas[side].OpenDirectRoom(t.Context(), pair[side], pair[1-side], time.Now())
			if assert.NoError(t, err, "pair %d side %d", i, side) {
				results[i][side] = result{room, created}
			}
		})
		require.False(t, t.Failed(), "some opens failed")

		seen := make(map[int64]bool)
		for i, r := range results {
			a, b := users[i][0], users[i][1]
			require.Equal(t, r[0].room.ID, r[1].room.ID, "pair %d: the two sides got different rooms", i)
			assert.NotEqual(t, r[0].created, r[1].created, "pair %d: exactly one side creates the room", i)
			assert.False(t, seen[r[0].room.ID], "pair %d got another pair's room", i)
			seen[r[0].room.ID] = true

			assertMembers(t, replicas[0], r[0].room.ID, a, b)
			for _, u := range []*models.User{a, b} {
				// Their direct room first: they are in it.
				assert.Equal(t, []string{fmt.Sprintf("direct:%d", r[0].room.ID), models.GeneralRoom}, roomNames(listAll(t, replicas[1], u.ID)),
					"pair %d: the rooms %s sees", i, u.Name)
			}
		}
	})
}

// assertSameMessage checks that a message read back is indistinguishable
// from the one CreateMessage returned, JSON included.
func assertSameMessage(t *testing.T, live, replayed *models.Message) {
	t.Helper()
	assert.Equal(t, live, replayed)
	assert.Equal(t, live.CreatedAt.Format(time.RFC3339Nano), replayed.CreatedAt.Format(time.RFC3339Nano))
	assert.JSONEq(t, jsonOf(t, live), jsonOf(t, replayed))
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestCreateMessage(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob := newUser(t, db, "Zoë 🚀"), newUser(t, db, "bob")
		general, random := newRoom(t, db, "general-2"), newRoom(t, db, "random")
		direct := openDirect(t, db, ada, bob)
		tests := []struct {
			name    string
			room    *models.Room
			author  *models.User
			text    string
			now     time.Time
			wantSeq int64
		}{
			{name: "first in a room", room: general, author: ada, text: "hello", now: time.Date(2025, 3, 30, 1, 59, 59, 123_456_789, time.FixedZone("CEST", 2*3600)), wantSeq: 1},
			{name: "second in the room", room: general, author: bob, text: "hi", now: time.Now(), wantSeq: 2},
			{name: "another room starts at 1", room: random, author: bob, text: `it's "100%" <b>_fine_</b>`, now: time.Now(), wantSeq: 1},
			{name: "back to the first room", room: general, author: ada, text: "😀 four bytes", now: time.Now(), wantSeq: 3},
			{name: "a direct room", room: direct, author: bob, text: "psst", now: time.Now(), wantSeq: 1},
		}
		live := make(map[int64][]*models.Message)
		for _, tt := range tests {
			m, _, err := db.CreateMessage(ctx, tt.room, tt.author, tt.text, at(tt.now), nil)
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.wantSeq, m.Seq, "%s: Seq", tt.name)
			assert.Equal(t, tt.room.ID, m.RoomID, tt.name)
			assert.Equal(t, fmt.Sprintf("%d:%d", tt.room.ID, tt.wantSeq), m.ID(), tt.name)
			assert.Equal(t, tt.text, m.Text, tt.name)
			assert.Equal(t, tt.author.ID, m.AuthorID, tt.name)
			assert.Same(t, tt.author, m.Author, tt.name)
			assert.Equal(t, time.UTC, m.CreatedAt.Location(), tt.name)
			assert.True(t, m.CreatedAt.Equal(tt.now.Truncate(time.Millisecond)), "%s: CreatedAt %v", tt.name, m.CreatedAt)
			live[tt.room.ID] = append(live[tt.room.ID], m)
		}
		for _, room := range []*models.Room{general, random, direct} {
			want := live[room.ID]
			after, err := db.MessagesAfter(ctx, room.ID, 0, 100)
			require.NoError(t, err)
			before, err := db.MessagesBefore(ctx, room.ID, 0, 100)
			require.NoError(t, err)
			slices.Reverse(before)
			require.Len(t, after, len(want), "room %d", room.ID)
			require.Len(t, before, len(want), "room %d", room.ID)
			for i := range want {
				assertSameMessage(t, want[i], after[i])
				assertSameMessage(t, want[i], before[i])
			}
			head, err := db.Head(ctx, models.RoomStream(room.ID))
			require.NoError(t, err)
			assert.Equal(t, int64(len(want)), head, "head of room %d", room.ID)
			stored, err := db.Room(ctx, room.ID)
			require.NoError(t, err)
			assert.Equal(t, want[len(want)-1].CreatedAt, stored.ActiveAt, "room %d is as active as its newest message", room.ID)
		}
	})
}

func TestCreateMessageFailureLeavesNoGap(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada := newUser(t, db, "ada")
		room := newRoom(t, db, "random")
		chatter(t, db, room, ada, 2)

		_, _, err := db.CreateMessage(ctx, room, &models.User{ID: ada.ID + 1000, Name: "ghost"}, "from nobody", time.Now, nil)
		require.Error(t, err, "a message by a user that does not exist was stored")

		head, err := db.Head(ctx, models.RoomStream(room.ID))
		require.NoError(t, err)
		assert.Equal(t, int64(2), head, "the failed append moved the head")
		assert.Equal(t, int64(3), say(t, db, room, ada, "next", time.Now()).Seq)
		all, err := db.MessagesAfter(ctx, room.ID, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, seq(1, 3), seqs(all))
	})
}

func TestMessagePaging(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada := newUser(t, db, "ada")
		room, other := newRoom(t, db, "random"), newRoom(t, db, "other")
		for range 7 { // interleaved, so a query that forgets the room shows
			chatter(t, db, room, ada, 1)
			chatter(t, db, other, ada, 2)
		}
		tests := []struct {
			name  string
			page  func(ctx context.Context, roomID, cursor int64, limit int) ([]*models.Message, error)
			from  int64
			limit int
			want  []int64
		}{
			{name: "after: from the start", page: db.MessagesAfter, from: 0, limit: 10, want: seq(1, 7)},
			{name: "after: first page", page: db.MessagesAfter, from: 0, limit: 3, want: seq(1, 3)},
			{name: "after: middle page", page: db.MessagesAfter, from: 3, limit: 2, want: seq(4, 5)},
			{name: "after: short last page", page: db.MessagesAfter, from: 5, limit: 10, want: seq(6, 7)},
			{name: "after: at the head", page: db.MessagesAfter, from: 7, limit: 10, want: nil},
			{name: "before: newest page", page: db.MessagesBefore, from: 0, limit: 3, want: []int64{7, 6, 5}},
			{name: "before: the middle", page: db.MessagesBefore, from: 5, limit: 2, want: []int64{4, 3}},
			{name: "before: short last page", page: db.MessagesBefore, from: 3, limit: 10, want: []int64{2, 1}},
			{name: "before: the first", page: db.MessagesBefore, from: 1, limit: 10, want: nil},
			{name: "before: beyond the head", page: db.MessagesBefore, from: 100, limit: 2, want: []int64{7, 6}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := tt.page(t.Context(), room.ID, tt.from, tt.limit)
				require.NoError(t, err)
				assert.Equal(t, tt.want, nilIfEmpty(seqs(got)))
				for _, m := range got {
					assert.Equal(t, room.ID, m.RoomID)
					if assert.NotNil(t, m.Author, "author not loaded") {
						assert.Equal(t, ada.Name, m.Author.Name)
					}
				}
			})
		}
		none, err := db.MessagesBefore(t.Context(), room.ID+100, 0, 10)
		require.NoError(t, err)
		assert.Empty(t, none, "a room that does not exist")
	})
}

func TestCreateMessageConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		replicas := twoReplicas(t, dialect)
		rooms := []*models.Room{newRoom(t, replicas[0], "one"), newRoom(t, replicas[0], "two")}
		const writers, perWriter = 8, 10
		authors := make([]*models.User, writers)
		for w := range authors {
			authors[w] = newUser(t, replicas[0], fmt.Sprintf("writer %d", w))
		}
		type key struct{ room, seq int64 }
		var mu sync.Mutex
		texts := make(map[key]string)
		got := make(map[int64][]int64)
		together(writers, func(w int) {
			db := replicas[w%len(replicas)]
			for i := range perWriter {
				room := rooms[(w+i)%len(rooms)]
				text := fmt.Sprintf("writer %d post %d", w, i)
				m, _, err := db.CreateMessage(t.Context(), room, authors[w], text, time.Now, nil)
				if !assert.NoError(t, err, text) {
					return
				}
				mu.Lock()
				texts[key{room.ID, m.Seq}] = text
				got[room.ID] = append(got[room.ID], m.Seq)
				mu.Unlock()
			}
		})
		require.False(t, t.Failed(), "some posts failed")

		for _, room := range rooms {
			n := int64(writers * perWriter / len(rooms))
			handed := slices.Sorted(slices.Values(got[room.ID]))
			require.Equal(t, seq(1, n), handed, "positions handed out in room %q", room.Name)
			head, err := replicas[1].Head(t.Context(), models.RoomStream(room.ID))
			require.NoError(t, err)
			assert.Equal(t, n, head, "room %q", room.Name)
			stored, err := replicas[1].MessagesAfter(t.Context(), room.ID, 0, 1000)
			require.NoError(t, err)
			require.Equal(t, seq(1, n), seqs(stored), "positions stored in room %q", room.Name)
			for _, m := range stored {
				assert.Equal(t, texts[key{room.ID, m.Seq}], m.Text, "room %q message %d", room.Name, m.Seq)
			}
		}
	})
}

// TestUnreadCounts: a user's unread count of a room counts the messages
// others posted there from the moment the user was created (not before) and
// since the user last read the room or posted in it. Step by step, the
// counts come out the same asked user by user and for both users at once,
// and only the rooms asked for are counted.
func TestUnreadCounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := newUnreadStory(t, db)
		for _, step := range s.steps() {
			step.do(t)
			s.check(t, step)
		}

		t.Run("only the rooms asked for", func(t *testing.T) {
			got, err := db.UnreadCounts(ctx, pairs([]int64{s.quiet.ID}, []int64{s.bob.ID}))
			require.NoError(t, err)
			assert.Equal(t, map[models.RoomUser]int{{Room: s.quiet.ID, User: s.bob.ID}: 1}, got)
			got, err = db.UnreadCounts(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, got)
		})
	})
}

// unreadStory is TestUnreadCounts' cast: ada; bob, who arrives after two of
// her messages in room; room, quiet and their direct room.
type unreadStory struct {
	db                  *store.DB
	ada, bob            *models.User
	room, quiet, direct *models.Room
}

// unreadStep is one step of TestUnreadCounts and every unread count after
// it, by room id (absent: 0).
type unreadStep struct {
	name string
	do   func(t *testing.T)
	ada  map[int64]int
	bob  map[int64]int
}

// newUnreadStory creates the cast of TestUnreadCounts in db.
func newUnreadStory(t *testing.T, db *store.DB) *unreadStory {
	t.Helper()
	s := &unreadStory{db: db, ada: newUser(t, db, "ada")}
	s.room, s.quiet = newRoom(t, db, "random"), newRoom(t, db, "quiet")
	// Written before bob existed: history, not news, for him.
	say(t, db, s.room, s.ada, "old", time.Now().Add(-time.Hour))
	s.bob = newUser(t, db, "bob")
	say(t, db, s.room, s.ada, "1 ms before bob", s.bob.CreatedAt.Add(-time.Millisecond))
	s.direct = openDirect(t, db, s.ada, s.bob)
	return s
}

// rooms are the ids of every room of the story.
func (s *unreadStory) rooms() []int64 { return []int64{s.room.ID, s.quiet.ID, s.direct.ID} }

// steps are the story's steps, in order.
func (s *unreadStory) steps() []unreadStep {
	db, ada, bob, room, quiet, direct := s.db, s.ada, s.bob, s.room, s.quiet, s.direct
	return []unreadStep{
		{
			name: "only messages from before bob",
			do:   func(*testing.T) {},
			ada:  map[int64]int{}, bob: map[int64]int{},
		},
		{
			name: "ada posts as bob is created and after",
			do: func(t *testing.T) {
				say(t, db, room, ada, "as bob arrives", bob.CreatedAt)
				say(t, db, room, ada, "later", time.Now())
				say(t, db, direct, ada, "psst", time.Now())
			},
			ada: map[int64]int{}, bob: map[int64]int{room.ID: 2, direct.ID: 1},
		},
		{
			name: "bob posts: the room is read for him up to his message",
			do:   func(t *testing.T) { say(t, db, room, bob, "hi", time.Now()) },
			ada:  map[int64]int{room.ID: 1}, bob: map[int64]int{direct.ID: 1},
		},
		{
			name: "ada posts after bob",
			do:   func(t *testing.T) { chatter(t, db, room, ada, 3) },
			ada:  map[int64]int{}, bob: map[int64]int{room.ID: 3, direct.ID: 1},
		},
		{
			name: "bob reads the room",
			do:   func(t *testing.T) { require.NoError(t, db.MarkRoomRead(t.Context(), bob.ID, room.ID, time.Now())) },
			ada:  map[int64]int{}, bob: map[int64]int{direct.ID: 1},
		},
		{
			name: "reading again and reading an empty room change nothing",
			do: func(t *testing.T) {
				require.NoError(t, db.MarkRoomRead(t.Context(), bob.ID, room.ID, time.Now()))
				require.NoError(t, db.MarkRoomRead(t.Context(), bob.ID, quiet.ID, time.Now()))
			},
			ada: map[int64]int{}, bob: map[int64]int{direct.ID: 1},
		},
		{
			name: "news after reading counts again",
			do: func(t *testing.T) {
				say(t, db, quiet, ada, "finally", time.Now())
				say(t, db, room, ada, "more", time.Now())
			},
			ada: map[int64]int{}, bob: map[int64]int{room.ID: 1, quiet.ID: 1, direct.ID: 1},
		},
		{
			name: "bob reads the direct room",
			do:   func(t *testing.T) { require.NoError(t, db.MarkRoomRead(t.Context(), bob.ID, direct.ID, time.Now())) },
			ada:  map[int64]int{}, bob: map[int64]int{room.ID: 1, quiet.ID: 1},
		},
	}
}

// check compares every unread count of every room after step with the
// step's, asked user by user and then for both users at once, room by room.
func (s *unreadStory) check(t *testing.T, step unreadStep) {
	t.Helper()
	ctx, rooms, ada, bob := t.Context(), s.rooms(), s.ada, s.bob
	for _, c := range []struct {
		user *models.User
		want map[int64]int
	}{{ada, step.ada}, {bob, step.bob}} {
		got, err := s.db.UnreadCounts(ctx, pairs(rooms, []int64{c.user.ID}))
		require.NoError(t, err, step.name)
		for _, id := range rooms {
			assert.Equal(t, c.want[id], got[models.RoomUser{Room: id, User: c.user.ID}], "%s: %s's unread count of room %d", step.name, c.user.Name, id)
		}
	}
	// The same counts for everyone at once, room by room.
	for _, id := range rooms {
		got, err := s.db.UnreadCounts(ctx, pairs([]int64{id}, []int64{ada.ID, bob.ID}))
		require.NoError(t, err, step.name)
		assert.Equal(t, step.ada[id], got[models.RoomUser{Room: id, User: ada.ID}], "%s: ada's unread count of room %d, counted with bob's", step.name, id)
		assert.Equal(t, step.bob[id], got[models.RoomUser{Room: id, User: bob.ID}], "%s: bob's unread count of room %d, counted with ada's", step.name, id)
	}
	// The same counts as chat keeps them: with the joined flags and the
	// head of the room's stream they are exact at.
	for _, id := range rooms {
		got, err := s.db.RoomUnreads(ctx, id, []int64{ada.ID, bob.ID})
		require.NoError(t, err, step.name)
		head, err := s.db.Head(ctx, models.RoomStream(id))
		require.NoError(t, err)
		joined, err := s.db.Joined(ctx, pairs([]int64{id}, []int64{ada.ID, bob.ID}))
		require.NoError(t, err)
		want := map[int64]int{ada.ID: step.ada[id], bob.ID: step.bob[id]}
		require.Len(t, got, 2, step.name)
		for _, c := range got {
			assert.Equal(t, want[c.UserID], c.Unread, "%s: user %d's unread count of room %d, with its head", step.name, c.UserID, id)
			assert.Equal(t, joined[models.RoomUser{Room: id, User: c.UserID}], c.Joined, "%s: whether user %d joined room %d", step.name, c.UserID, id)
			assert.Equal(t, head, c.Head, "%s: the head of room %d", step.name, id)
		}
	}
}

func TestSearchUsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		names := []string{
			"ada lovelace", "adam", "Eve ADAMS", "grace hopper",
			"100% real", "100 real", "under_score", "underXscore",
			"bang!", "bang", `back\slash`, "backslash",
		}
		byName := make(map[string]*models.User)
		for _, n := range names {
			byName[n] = newUser(t, db, n)
		}
		me := newUser(t, db, "me, adaptable")
		tests := []struct {
			name    string
			search  string
			limit   int
			except  int64
			want    []string
			ordered bool // names of one case, so SQLite and MySQL agree on the order
		}{
			{name: "substring, by name", search: "ace", limit: 10, want: []string{"ada lovelace", "grace hopper"}, ordered: true},
			{name: "upper-case search", search: "ADA", limit: 10, want: []string{"ada lovelace", "adam", "Eve ADAMS", "me, adaptable"}},
			{name: "mixed-case search", search: "aDaM", limit: 10, want: []string{"adam", "Eve ADAMS"}},
			{name: "leaves out the caller", search: "ada", limit: 10, except: me.ID, want: []string{"ada lovelace", "adam", "Eve ADAMS"}},
			{name: "includes the caller otherwise", search: "adapt", limit: 10, want: []string{me.Name}},
			{name: "limit", search: "a", limit: 2, except: me.ID, want: []string{"100 real", "100% real"}, ordered: true},
			{name: "percent is literal", search: "%", limit: 10, want: []string{"100% real"}},
			{name: "percent inside", search: "0% r", limit: 10, want: []string{"100% real"}},
			{name: "underscore is literal", search: "r_s", limit: 10, want: []string{"under_score"}},
			{name: "the escape character is literal", search: "g!", limit: 10, want: []string{"bang!"}},
			{name: "backslash is literal", search: `k\s`, limit: 10, want: []string{`back\slash`}},
			{name: "no match", search: "zzz", limit: 10, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := db.SearchUsers(t.Context(), tt.search, tt.limit, tt.except)
				require.NoError(t, err)
				if tt.ordered {
					assert.Equal(t, tt.want, userNames(got))
				} else {
					assert.ElementsMatch(t, tt.want, userNames(got))
				}
				for _, u := range got {
					if want, ok := byName[u.Name]; ok {
						assert.Equal(t, want, u)
					}
				}
			})
		}
		t.Run("empty search lists everybody but the caller", func(t *testing.T) {
			got, err := db.SearchUsers(t.Context(), "", 100, me.ID)
			require.NoError(t, err)
			assert.ElementsMatch(t, names, userNames(got))
		})
	})
}

func TestMessageLog(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada := newUser(t, db, "ada")
		room, other := newRoom(t, db, "random"), newRoom(t, db, "other")
		posted := chatter(t, db, room, ada, 3)
		chatter(t, db, other, ada, 5)
		log := db.MessageLog()

		head, err := log.Head(ctx, models.RoomStream(room.ID))
		require.NoError(t, err)
		assert.Equal(t, int64(3), head)
		got, err := log.After(ctx, models.RoomStream(room.ID), 1, 10)
		require.NoError(t, err)
		assert.Equal(t, posted[1:], got)

		empty := newRoom(t, db, "empty")
		head, err = log.Head(ctx, models.RoomStream(empty.ID))
		require.NoError(t, err)
		assert.Zero(t, head, "a room without messages")
		got, err = log.After(ctx, models.RoomStream(empty.ID), 0, 10)
		require.NoError(t, err)
		assert.Empty(t, got)

		for _, name := range []string{models.StatusStream, "room:", "room:abc", "room:0", "room:-1"} {
			_, err := log.After(ctx, name, 0, 10)
			assert.Error(t, err, "stream %q", name)
		}
	})
}

// TestLastMessages: one query gives each room its newest message, with its
// author; an empty room has none.
func TestLastMessages(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada, bob := newUser(t, db, "ada"), newUser(t, db, "bob")
		busy, quiet, empty := newRoom(t, db, "busy"), newRoom(t, db, "quiet"), newRoom(t, db, "empty")
		post := func(room *models.Room, author *models.User, text string) {
			_, _, err := db.CreateMessage(t.Context(), room, author, text, time.Now, nil)
			require.NoError(t, err)
		}
		post(busy, ada, "one")
		post(quiet, ada, "only")
		post(busy, bob, "two")
		post(busy, ada, "three")

		last, err := db.LastMessages(t.Context(), []int64{busy.ID, quiet.ID, empty.ID})
		require.NoError(t, err)
		require.NotNil(t, last[busy.ID])
		assert.Equal(t, "three", last[busy.ID].Text)
		assert.Equal(t, "ada", last[busy.ID].Author.Name)
		assert.Equal(t, time.UTC, last[busy.ID].CreatedAt.Location())
		require.NotNil(t, last[quiet.ID])
		assert.Equal(t, "only", last[quiet.ID].Text)
		assert.NotContains(t, last, empty.ID, "an empty room has no last message")
		last, err = db.LastMessages(t.Context(), nil)
		require.NoError(t, err)
		assert.Empty(t, last)
	})
}

// TestRoomMembers: one query gives the members of many direct rooms, by
// id; a public room has none.
func TestRoomMembers(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada, bob, cid := newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "cid")
		public := newRoom(t, db, "public")
		adaBob, cidAda := openDirect(t, db, ada, bob), openDirect(t, db, cid, ada)
		members, err := db.RoomMembers(t.Context(), []int64{public.ID, adaBob.ID, cidAda.ID, 999999})
		require.NoError(t, err)
		assert.Equal(t, map[int64][]*models.User{adaBob.ID: {ada, bob}, cidAda.ID: {ada, cid}}, members)
		members, err = db.RoomMembers(t.Context(), nil)
		require.NoError(t, err)
		assert.Empty(t, members)
	})
}

func TestRooms(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		a, b := newRoom(t, db, "a"), newRoom(t, db, "b")
		got, err := db.Rooms(t.Context(), []int64{a.ID, b.ID, 999999})
		require.NoError(t, err)
		require.Len(t, got, 2, "a missing room is left out")
		assert.Equal(t, "a", got[a.ID].Name)
		assert.Equal(t, "b", got[b.ID].Name)
		assert.Equal(t, time.UTC, got[a.ID].CreatedAt.Location())
	})
}

// TestNamesCompareIgnoringCaseOnly: on every database, room names and
// searches ignore case, Unicode's and not only ASCII's, and nothing else:
// accents tell names apart; results are ordered by the lowercased name's
// code points (see names.go).
func TestNamesCompareIgnoringCaseOnly(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		// As at a restart: a second migration keeps the rules (on MySQL,
		// the room key's collation).
		require.NoError(t, db.Migrate(ctx))
		_, err := db.CreateRoom(ctx, "Café", 0, time.Now())
		require.NoError(t, err)
		for _, taken := range []string{"CAFÉ", "café"} {
			_, err := db.CreateRoom(ctx, taken, 0, time.Now())
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%q is Café's name in another case: %v", taken, err)
		}
		for _, other := range []string{"Cafe", "CAFE", "Cafè"} {
			if other == "CAFE" {
				_, err := db.CreateRoom(ctx, other, 0, time.Now())
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "CAFE is Cafe's name in another case")
				continue
			}
			_, err := db.CreateRoom(ctx, other, 0, time.Now())
			assert.NoError(t, err, "%q differs from Café by an accent", other)
		}

		for _, n := range []string{"Émile", "emile", "Zoë", "zoe", "ÅSA", "bob"} {
			newUser(t, db, n)
		}
		for search, want := range map[string][]string{
			"ÉMI": {"Émile"},
			"émi": {"Émile"},
			"EMI": {"emile"},
			"ZOË": {"Zoë"},
			"åsa": {"ÅSA"},
			"e":   {"emile", "zoe", "Émile"}, // by code point: e, z, then é (U+00E9)
		} {
			got, err := db.SearchUsers(ctx, search, 10, 0)
			require.NoError(t, err)
			assert.Equal(t, want, userNames(got), "search %q", search)
		}
		var names []string
		for _, r := range listPages(t, db, store.RoomListQuery{Search: "CAFÉ", AsOf: time.Now(), Limit: 10}, nil) {
			names = append(names, r.Room.Name)
		}
		assert.Equal(t, []string{"Café"}, names, "a room search ignores case, not accents")
	})
}
