package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// listPages pages through viewer's room list as of asOf (matching search),
// limit rooms a page, calling between(page) after each page but the last;
// it returns every room listed, in order.
func listPages(tb testing.TB, db *store.DB, q store.RoomListQuery, between func(page int)) []models.ListedRoom {
	tb.Helper()
	var out []models.ListedRoom
	for page := 0; ; page++ {
		got, err := db.ListRooms(tb.Context(), q)
		require.NoError(tb, err, "page %d", page)
		out = append(out, got...)
		if len(got) < q.Limit {
			return out
		}
		q.After = &got[len(got)-1].Place
		if between != nil {
			between(page)
		}
	}
}

// listAll returns every room viewer sees now, in list order.
func listAll(tb testing.TB, db *store.DB, viewer int64) []*models.Room {
	tb.Helper()
	listed := listPages(tb, db, store.RoomListQuery{Viewer: viewer, AsOf: time.Now(), Limit: 3}, nil)
	return each(listed, func(l models.ListedRoom) *models.Room { return l.Room })
}

// pairs returns every pair of rooms and users.
func pairs(rooms, users []int64) []models.RoomUser {
	var out []models.RoomUser
	for _, r := range rooms {
		for _, u := range users {
			out = append(out, models.RoomUser{Room: r, User: u})
		}
	}
	return out
}

// TestListRoomsOrder: the rooms a user is in (their direct rooms, the public
// rooms they created, posted to or read) come first, then the others; each
// part by latest activity (the newest message, else the creation), then the
// newest room. Anonymous callers see the public rooms by activity.
func TestListRoomsOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob, cid, eve := newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "cid"), newUser(t, db, "eve")
		t0 := time.Now().Add(-time.Hour)
		create := func(name string, creator *models.User, minute int) *models.Room {
			var id int64
			if creator != nil {
				id = creator.ID
			}
			r, err := db.CreateRoom(ctx, name, id, t0.Add(time.Duration(minute)*time.Minute))
			require.NoError(t, err)
			return r
		}
		quiet := create("quiet", nil, 1)
		busy := create("busy", nil, 2)
		create("ada's", ada, 3)
		fresh := create("fresh", nil, 10)
		adaBob := openDirect(t, db, ada, bob)
		say(t, db, busy, cid, "news", t0.Add(20*time.Minute))
		say(t, db, quiet, bob, "hello", t0.Add(5*time.Minute))
		require.NoError(t, db.MarkRoomRead(ctx, ada.ID, fresh.ID, time.Now()))
		// general was created with the database, after all of these.

		tests := []struct {
			name   string
			viewer int64
			want   []string
		}{
			{name: "anonymous: by activity", viewer: 0,
				want: []string{"general", "busy", "fresh", "quiet", "ada's"}},
			{name: "a user in no room", viewer: eve.ID,
				want: []string{"general", "busy", "fresh", "quiet", "ada's"}},
			{name: "ada: her direct room, the room she read and the one she created first", viewer: ada.ID,
				want: []string{fmt.Sprintf("direct:%d", adaBob.ID), "fresh", "ada's", "general", "busy", "quiet"}},
			{name: "bob: the direct room and the room he posted to", viewer: bob.ID,
				want: []string{fmt.Sprintf("direct:%d", adaBob.ID), "quiet", "general", "busy", "fresh", "ada's"}},
			{name: "cid posted to busy", viewer: cid.ID,
				want: []string{"busy", "general", "fresh", "quiet", "ada's"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Recent activity reorders the list a second later (see
				// listSettle): ask for it as of a minute on.
				got := listPages(t, db, store.RoomListQuery{Viewer: tt.viewer, AsOf: time.Now().Add(time.Minute), Limit: 2}, nil)
				assert.Equal(t, tt.want, roomNames(each(got, func(l models.ListedRoom) *models.Room { return l.Room })))
				for i, l := range got {
					assert.Equal(t, time.UTC, l.Room.CreatedAt.Location())
					assert.Equal(t, time.UTC, l.Room.ActiveAt.Location())
					if i > 0 {
						assert.True(t, got[i-1].Place.Before(l.Place), "%v before %v", got[i-1].Place, l.Place)
					}
				}
			})
		}
	})
}

// TestListRoomsSearch: a search keeps the rooms whose name contains it in
// any case (a direct room's name is the other member's), wildcards
// literal, in list order.
func TestListRoomsSearch(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ada, bob, cid := newUser(t, db, "ada"), newUser(t, db, "Bobby Tables"), newUser(t, db, "cid")
		for _, name := range []string{"Ops", "devops", "100% ops", "under_score", "underXscore", "random"} {
			newRoom(t, db, name)
		}
		adaBob := openDirect(t, db, ada, bob)
		openDirect(t, db, bob, cid)
		tests := []struct {
			name   string
			viewer int64
			search string
			want   []string
		}{
			{name: "any case", search: "OPS", want: []string{"100% ops", "devops", "Ops"}},
			{name: "percent is literal", search: "0% o", want: []string{"100% ops"}},
			{name: "underscore is literal", search: "r_s", want: []string{"under_score"}},
			{name: "a direct room by the other member's name", viewer: ada.ID, search: "table", want: []string{fmt.Sprintf("direct:%d", adaBob.ID)}},
			{name: "not by one's own name", viewer: bob.ID, search: "bobby", want: []string{}},
			{name: "nor somebody else's direct room", viewer: cid.ID, search: "ada", want: []string{}},
			{name: "no match", search: "zzz", want: []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := listPages(t, db, store.RoomListQuery{Viewer: tt.viewer, Search: tt.search, AsOf: time.Now(), Limit: 2}, nil)
				assert.Equal(t, tt.want, roomNames(each(got, func(l models.ListedRoom) *models.Room { return l.Room })))
			})
		}
	})
}

// TestListRoomsPagesOnceWhileRoomsChange: paging through 120 rooms, a few
// at a time, while messages arrive in rooms already listed and rooms not
// yet listed (some timed just before the list's moment, as a message
// committing as the first page is read), the viewer reads and joins rooms
// and new rooms are created, lists every room that existed at the first
// page exactly once, in one order, and no room created since.
func TestListRoomsPagesOnceWhileRoomsChange(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob := newUser(t, db, "ada"), newUser(t, db, "bob")
		t0 := time.Now().Add(-time.Hour)
		var rooms []*models.Room
		for i := range 120 {
			r, err := db.CreateRoom(ctx, fmt.Sprintf("room %03d", i), 0, t0.Add(time.Duration(i%40)*time.Second))
			require.NoError(t, err)
			rooms = append(rooms, r)
			if i%3 == 0 {
				say(t, db, r, bob, "hello", t0.Add(time.Duration(i)*time.Second))
			}
			if i%10 == 0 {
				require.NoError(t, db.MarkRoomRead(ctx, ada.ID, r.ID, t0))
			}
		}
		existing := map[int64]bool{}
		for _, r := range listAll(t, db, ada.ID) {
			existing[r.ID] = true
		}
		require.Len(t, existing, 121, "the rooms and general")

		rng := rand.New(rand.NewPCG(1, 2))
		asOf := time.Now()
		late := 0
		listed := listPages(t, db, store.RoomListQuery{Viewer: ada.ID, AsOf: asOf, Limit: 7}, func(page int) {
			for range 5 {
				r := rooms[rng.IntN(len(rooms))]
				say(t, db, r, bob, "news", time.Now())
			}
			// A message timed just before the list's moment, committed
			// after its first page.
			say(t, db, rooms[rng.IntN(len(rooms))], bob, "late", asOf.Add(-500*time.Millisecond))
			require.NoError(t, db.MarkRoomRead(ctx, ada.ID, rooms[rng.IntN(len(rooms))].ID, time.Now()))
			_, err := db.CreateRoom(ctx, fmt.Sprintf("late %d", late), ada.ID, time.Now())
			require.NoError(t, err)
			late++
		})
		seen := map[int64]int{}
		for i, l := range listed {
			seen[l.Room.ID]++
			assert.True(t, existing[l.Room.ID], "room %q was created after the first page", l.Room.Name)
			if i > 0 {
				assert.True(t, listed[i-1].Place.Before(l.Place), "out of order at %d: %v then %v", i, listed[i-1].Place, l.Place)
			}
		}
		for id := range existing {
			assert.Equal(t, 1, seen[id], "room %d listed %d times", id, seen[id])
		}
		assert.Len(t, listed, 121)

		// A new list shows the new rooms and the moves.
		after := listAll(t, db, ada.ID)
		assert.Len(t, after, 121+late)
	})
}

// TestBigSetsAreQueriedInPieces: the batch reads take sets larger than any
// database accepts as placeholders of one statement (MySQL: 65535, SQLite:
// 32766) and answer them whole.
func TestBigSetsAreQueriedInPieces(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		ada, bob := newUser(t, db, "ada"), newUser(t, db, "bob")
		public := newRoom(t, db, "public")
		direct := openDirect(t, db, ada, bob)
		say(t, db, public, ada, "hi", time.Now())
		say(t, db, direct, ada, "psst", time.Now())
		require.NoError(t, db.MarkRoomRead(ctx, bob.ID, public.ID, time.Now()))
		say(t, db, public, ada, "again", time.Now())

		const n = 70000
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = int64(i + 1) // the real rooms among them
		}
		rooms, err := db.Rooms(ctx, ids)
		require.NoError(t, err)
		assert.Len(t, rooms, 3, "general, public and direct")
		members, err := db.RoomMembers(ctx, ids)
		require.NoError(t, err)
		assert.Equal(t, []string{"ada", "bob"}, userNames(members[direct.ID]))
		last, err := db.LastMessages(ctx, ids)
		require.NoError(t, err)
		assert.Equal(t, "again", last[public.ID].Text)
		assert.Equal(t, "psst", last[direct.ID].Text)

		// One room's watchers (a crowd of user ids), with bob's room list.
		keys := pairs([]int64{public.ID}, ids)
		keys = append(keys, pairs([]int64{public.ID, direct.ID}, []int64{bob.ID})...)
		rng := rand.New(rand.NewPCG(3, 4))
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		unread, err := db.UnreadCounts(ctx, keys)
		require.NoError(t, err)
		assert.Equal(t, map[models.RoomUser]int{
			{Room: public.ID, User: bob.ID}: 1,
			{Room: direct.ID, User: bob.ID}: 1,
		}, unread)
		joined, err := db.Joined(ctx, keys)
		require.NoError(t, err)
		assert.Equal(t, map[models.RoomUser]bool{
			{Room: public.ID, User: ada.ID}: true, // posted
			{Room: public.ID, User: bob.ID}: true, // read
		}, joined, "and not bob in the direct room, which he has not read (nor ada's, not asked for)")
	})
}
