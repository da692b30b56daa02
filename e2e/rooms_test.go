package e2e

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The room list and room creation against the real server: LIMIT_ROOMS,
// and rooms(first, after, search) paging, searching and ordering.

// TestRoomLimit: with the default LIMIT_ROOMS (10 an hour, bursts of 10), a
// user's eleventh new room, public or direct, is refused with RATE_LIMITED
// and stores nothing, anywhere; reopening a direct room stays free; other
// users create rooms as before; the refusals are counted.
func TestRoomLimit(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")
	direct := s.openDirect(t, alice.token, bob.ID)
	for i := range 9 {
		s.createRoom(t, alice.token, fmt.Sprintf("alice %d", i))
	}
	refused := func(what, query string, vars map[string]any) {
		t.Helper()
		r := s.do(t, alice.token, query, vars)
		require.Len(t, r.Errors, 1, what)
		assert.Equal(t, "RATE_LIMITED", r.Errors[0].Code(), what)
		assert.Equal(t, "too many new rooms; try again later", r.Errors[0].Message, what)
	}
	refused("an eleventh room", `mutation { createRoom(name: "one too many") { id } }`, nil)
	refused("a new direct room", `mutation($u: ID!) { openDirectRoom(userId: $u) { id } }`, map[string]any{"u": carol.ID})

	again := s.openDirect(t, alice.token, bob.ID)
	assert.Equal(t, direct.ID, again.ID, "reopening a direct room is free")
	assert.Empty(t, s.rooms(t, "", "one too many"), "the refused room was not stored")
	for _, r := range s.rooms(t, carol.token, "") {
		assert.False(t, r.Direct, "carol has no direct room: %v", r)
	}
	assert.Len(t, s.rooms(t, alice.token, "alice "), 9)

	s.createRoom(t, bob.token, "bob's own")
	ca := s.openDirect(t, carol.token, alice.ID)
	assert.True(t, ca.Direct, "carol's budget is her own, even for a room with alice")
	waitMetric(t, s, `switchboard_rate_limited_total{limit="rooms"}`, 2)
}

// TestRoomLimitOff: LIMIT_ROOMS=0 switches the limit off (load tests need
// that), for public and direct rooms alike.
func TestRoomLimitOff(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_ROOMS": "0"})
	alice := s.chatUser(t, "alice")
	for i := range 25 {
		s.createRoom(t, alice.token, fmt.Sprintf("room %d", i))
	}
	for i := range 5 {
		s.openDirect(t, alice.token, s.chatUser(t, fmt.Sprintf("peer %d", i)).ID)
	}
	assert.Len(t, s.rooms(t, alice.token, ""), 31, "25 public, 5 direct and general")
	assert.Zero(t, s.metric(t, `switchboard_rate_limited_total{limit="rooms"}`))
}

// TestDirectRoomOpeningIsLimited: opening direct rooms anew draws on the
// same budget (here 2): the third new one is refused and appears in nobody's
// list; opening one that exists, from either side, is not limited.
func TestDirectRoomOpeningIsLimited(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_ROOMS": "2"})
	alice := s.chatUser(t, "alice")
	peers := []chatUser{s.chatUser(t, "p0"), s.chatUser(t, "p1"), s.chatUser(t, "p2")}
	first := s.openDirect(t, alice.token, peers[0].ID)
	s.openDirect(t, alice.token, peers[1].ID)
	r := s.do(t, alice.token, `mutation($u: ID!) { openDirectRoom(userId: $u) { id } }`, map[string]any{"u": peers[2].ID})
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "RATE_LIMITED", r.Errors[0].Code())
	assert.Len(t, s.rooms(t, peers[2].token, ""), 1, "p2 sees general only")
	for range 5 {
		assert.Equal(t, first.ID, s.openDirect(t, alice.token, peers[0].ID).ID)
		assert.Equal(t, first.ID, s.openDirect(t, peers[0].token, alice.ID).ID)
	}
}

// listedRoom is a room as the paging test reads it.
type listedRoom struct {
	ID       string
	Name     string
	Joined   bool
	ActiveAt time.Time
}

// TestRoomListPagesOnceWhileMessagesArrive: paging through 121 rooms ten at
// a time while another user keeps posting to half of them (listed and not
// yet listed alike) returns every room exactly once: first the ten the
// reader posted to, then the others, the quiet ones newest first.
func TestRoomListPagesOnceWhileMessagesArrive(t *testing.T) {
	for _, backend := range databases {
		t.Run(string(backend), func(t *testing.T) {
			// The poster posts as fast as the server answers: on a fast
			// machine, faster than the per-user operation limit.
			env := withDatabase(t, backend, map[string]string{"LIMIT_ROOMS": "0", "LIMIT_MESSAGES": "0", "LIMIT_REQUESTS": "0", "DEMO_FEED": "false"})
			roomListPagesOnce(t, startServer(t, env))
		})
	}
}

// roomListPagesOnce is TestRoomListPagesOnceWhileMessagesArrive on s.
func roomListPagesOnce(t *testing.T, s *testServer) {
	owner, reader, poster := s.chatUser(t, "owner"), s.chatUser(t, "reader"), s.chatUser(t, "poster")
	ids := make([]string, 120)
	for i := range ids {
		ids[i] = s.createRoom(t, owner.token, fmt.Sprintf("room %03d", i)).ID
	}
	joined := map[string]bool{}
	for i := 0; i < len(ids); i += 12 {
		s.postMessage(t, reader.token, ids[i], "here")
		joined[ids[i]] = true
	}
	// The even rooms are busy: the poster posts to them all along, and new
	// messages arrive before each next page.
	busy := make([]string, 0, len(ids)/2)
	for i := 0; i < len(ids); i += 2 {
		busy = append(busy, ids[i])
	}
	posted, stop := keepPosting(t, s, poster.token, busy)
	listed := readRoomList(t, s, reader.token, func() {
		n := posted.Load()
		require.Eventually(t, func() bool { return posted.Load() >= n+3 }, 5*time.Second, time.Millisecond)
	})
	stop()
	t.Logf("%d messages arrived while the reader read %d rooms", posted.Load(), len(listed))

	seen := map[string]int{}
	for _, r := range listed {
		seen[r.ID]++
	}
	for _, id := range ids {
		assert.Equal(t, 1, seen[id], "room %s listed %d times", id, seen[id])
	}
	require.Len(t, listed, 121, "the rooms and general")
	for i, r := range listed {
		assert.Equal(t, i < len(joined), joined[r.ID], "room %d of the list, %q: the rooms the reader is in come first", i, r.Name)
	}
	// The quiet rooms (odd, never posted to) keep their place: newest
	// first, as they were created; general, the oldest, is last.
	var quiet []int
	for _, r := range listed {
		if n, err := strconv.Atoi(r.Name[len("room "):]); err == nil && n%2 == 1 {
			quiet = append(quiet, n)
		}
	}
	require.Len(t, quiet, 60)
	for i := 1; i < len(quiet); i++ {
		assert.Greater(t, quiet[i-1], quiet[i], "quiet rooms newest first")
	}
	assert.Equal(t, "general", listed[len(listed)-1].Name)
}

// keepPosting posts messages as token to random rooms of ids until stop is
// called; posted counts them.
func keepPosting(t *testing.T, s *testServer, token string, ids []string) (posted *atomic.Int64, stop func()) {
	posted = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 8))
		for {
			select {
			case <-done:
				return
			default:
			}
			r := s.do(t, token, `mutation($r: ID!) { postMessage(roomId: $r, text: "news") { id } }`,
				map[string]any{"r": ids[rng.IntN(len(ids))]})
			assert.Empty(t, r.Errors)
			posted.Add(1)
		}
	})
	return posted, func() {
		close(done)
		wg.Wait()
	}
}

// readRoomList pages through token's room list ten rooms at a time,
// calling between after every page but the last, and returns the rooms in
// list order.
func readRoomList(t *testing.T, s *testServer, token string, between func()) []listedRoom {
	t.Helper()
	const query = `query($after: String) { rooms(first: 10, after: $after) {
		edges { node { id name joined activeAt } } pageInfo { hasNextPage endCursor } } }`
	var listed []listedRoom
	var after any
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20, "the list does not end")
		var d struct {
			Rooms struct {
				Edges    []struct{ Node listedRoom }
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
			}
		}
		s.mustDo(t, token, query, map[string]any{"after": after}, &d)
		for _, e := range d.Rooms.Edges {
			listed = append(listed, e.Node)
		}
		if !d.Rooms.PageInfo.HasNextPage {
			return listed
		}
		after = d.Rooms.PageInfo.EndCursor
		between()
	}
}

// TestRoomSearch: search keeps the rooms whose name contains it, in any
// case (a direct room by the other member's name), pages like the whole
// list, and refuses what no name could match.
func TestRoomSearch(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_ROOMS": "0"})
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "Bobby Ops")
	for _, name := range []string{"Ops", "devops", "100% ops", "random", "opera"} {
		s.createRoom(t, alice.token, name)
	}
	direct := s.openDirect(t, alice.token, bob.ID)
	names := func(token, search string) []string {
		var out []string
		for _, r := range s.rooms(t, token, search) {
			out = append(out, r.Name)
		}
		return out
	}
	assert.ElementsMatch(t, []string{"Ops", "devops", "100% ops", "Bobby Ops"}, names(alice.token, "OPS"))
	assert.ElementsMatch(t, []string{"Ops", "devops", "100% ops"}, names("", "ops"), "anonymous: no direct room")
	assert.Equal(t, []string{"100% ops"}, names(alice.token, "0% "), "% is a character")
	assert.Equal(t, []string{"alice"}, names(bob.token, "ali"), "bob finds his direct room by alice's name")
	assert.Empty(t, names(alice.token, "zzz"))

	page := s.roomPage(t, alice.token, 2, "", "ops")
	require.Len(t, page.Edges, 2)
	require.True(t, page.PageInfo.HasNextPage)
	rest := s.roomPage(t, alice.token, 10, page.PageInfo.EndCursor, "ops")
	assert.Len(t, rest.Edges, 2)
	assert.False(t, rest.PageInfo.HasNextPage)
	assert.Equal(t, direct.ID, page.Edges[0].Node.ID, "she is in all four: the newest first")
}

// TestJoinedRoomsComeFirst: a signed-in user's list starts with the rooms
// they are in (created, posted to, read, direct), however old, and the
// others follow; an anonymous caller's list is by activity alone.
func TestJoinedRoomsComeFirst(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_ROOMS": "0"})
	owner, reader := s.chatUser(t, "owner"), s.chatUser(t, "reader")
	old := s.createRoom(t, owner.token, "old")
	read := s.createRoom(t, owner.token, "read")
	for i := range 5 {
		s.createRoom(t, owner.token, fmt.Sprintf("newer %d", i))
	}
	s.postMessage(t, reader.token, old.ID, "I was here")
	s.mustDo(t, reader.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": read.ID}, nil)
	mine := s.createRoom(t, reader.token, "mine")

	list := s.rooms(t, reader.token, "")
	require.Len(t, list, 9)
	first := []string{list[0].Name, list[1].Name, list[2].Name}
	assert.ElementsMatch(t, []string{"old", "read", "mine"}, first, "the reader's rooms first: %v", list)
	var flags struct {
		Rooms struct {
			Edges []struct{ Node struct{ Joined bool } }
		}
	}
	s.mustDo(t, reader.token, `{ rooms(first: 3) { edges { node { joined } } } }`, nil, &flags)
	for _, e := range flags.Rooms.Edges {
		assert.True(t, e.Node.Joined)
	}
	anonymous := s.rooms(t, "", "")
	assert.Equal(t, mine.ID, anonymous[0].ID, "anonymous: the newest room first")
	assert.Equal(t, "general", anonymous[len(anonymous)-1].Name)
}
