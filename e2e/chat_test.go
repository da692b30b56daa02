package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
)

// Chat over the real server: HTTP for queries and mutations, raw WebSocket
// clients for the live parts.

// The resume promise of statuses holds for a room's messages: concurrent
// posters, subscribers that drop and resume with after.
func TestChatResumeUnderConcurrentPosters(t *testing.T) {
	for _, backend := range databases {
		t.Run(string(backend), func(t *testing.T) {
			env := withDatabase(t, backend, map[string]string{"LIMIT_MESSAGES": "0", "LIMIT_REQUESTS": "0"}) // posters and resuming subscribers flood on purpose
			s := startServer(t, env)
			r := s.createRoom(t, s.signIn(t, "owner"), "resume-"+string(backend))
			feed := messageFeed(r.ID)
			checkResume(t, feed, []*testServer{s}, []*testServer{s}, 4, 30)
		})
	}
}

// TestDirectRoomIsInvisibleToOthers: for anyone but its two members, every
// way into a direct room answers exactly as for a room that does not exist.
func TestDirectRoomIsInvisibleToOthers(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")
	direct := s.openDirect(t, alice.token, bob.ID)
	assert.True(t, direct.Direct)
	assert.Equal(t, "bob", direct.Name, "a direct room is named after the other member")
	again := s.openDirect(t, bob.token, alice.ID)
	assert.Equal(t, direct.ID, again.ID, "the same pair always gets the same room, whoever opens it")
	assert.Equal(t, "alice", again.Name)
	s.postMessage(t, alice.token, direct.ID, "private")
	const missing = "987654"

	assertRoomHiddenOverHTTP(t, s, carol, direct.ID, missing)

	// Over WebSocket: every subscription field answers the same error.
	ws := s.chatWS(t, carol.token)
	assertRoomHiddenOverWS(t, ws, direct.ID, missing)

	// Nor does it show in carol's room list, now or live.
	for _, r := range s.rooms(t, carol.token, "") {
		assert.NotEqual(t, direct.ID, r.ID, "carol's rooms")
	}
	assert.Empty(t, s.rooms(t, carol.token, "bob"), "nor when she searches for it")
	general := s.generalRoom(t)
	ws.subscribe("rooms", `subscription { roomsChanged { `+roomFields+` } }`, nil)
	markRead := func(u chatUser, roomID string) func() {
		return func() {
			s.mustDo(t, u.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": roomID}, nil)
		}
	}
	primed[room](ws, "rooms", "roomsChanged", markRead(carol, general.ID))
	s.postMessage(t, alice.token, direct.ID, "still private")
	s.postMessage(t, alice.token, general.ID, "public")
	until(ws, "rooms", "roomsChanged", 5*time.Second, func(r room) bool {
		require.NotEqual(t, direct.ID, r.ID, "carol hears nothing of the direct room")
		return r.ID == general.ID && r.UnreadCount == 1
	})

	// And the members themselves cannot open a room with themselves.
	r := s.do(t, alice.token, `mutation($u: ID!) { openDirectRoom(userId: $u) { id } }`, map[string]any{"u": alice.ID})
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	r = s.do(t, alice.token, `mutation($u: ID!) { openDirectRoom(userId: $u) { id } }`, map[string]any{"u": missing})
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "NOT_FOUND", r.Errors[0].Code())
}

// assertRoomHiddenOverHTTP checks that every query and mutation naming room
// hidden answers outsider exactly as for room missing, which does not
// exist: NOT_FOUND; the queries answer an anonymous caller alike too.
func assertRoomHiddenOverHTTP(t *testing.T, s *testServer, outsider chatUser, hidden, missing string) {
	t.Helper()
	// answer is the error code and message (with the room id made generic)
	// of one request.
	answer := func(token, query string, vars map[string]any, roomID string) string {
		r := s.do(t, token, query, vars)
		require.Len(t, r.Errors, 1, "query %s: %s", query, r.Data)
		return r.Errors[0].Code() + ": " + strings.ReplaceAll(r.Errors[0].Message, roomID, "ID")
	}
	paths := []struct {
		query string
		vars  func(id string) map[string]any
	}{
		{`query($r: ID!) { room(id: $r) { id } }`, func(id string) map[string]any { return map[string]any{"r": id} }},
		{`query($r: ID!) { messages(roomId: $r) { edges { cursor } } }`, func(id string) map[string]any { return map[string]any{"r": id} }},
		{`query($r: ID!) { online(roomId: $r) { id } }`, func(id string) map[string]any { return map[string]any{"r": id} }},
		{`mutation($r: ID!) { postMessage(roomId: $r, text: "hi") { id } }`, func(id string) map[string]any { return map[string]any{"r": id} }},
		{`mutation($r: ID!) { setTyping(roomId: $r, typing: true) }`, func(id string) map[string]any { return map[string]any{"r": id} }},
		{`mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, func(id string) map[string]any { return map[string]any{"r": id} }},
	}
	for _, p := range paths {
		got := answer(outsider.token, p.query, p.vars(hidden), hidden)
		want := answer(outsider.token, p.query, p.vars(missing), missing)
		assert.Equal(t, want, got, "%s: %s", outsider.Name, p.query)
		assert.True(t, strings.HasPrefix(got, "NOT_FOUND"), "%s: %s: %s", outsider.Name, p.query, got)
		if strings.HasPrefix(p.query, "query") {
			assert.Equal(t, answer("", p.query, p.vars(missing), missing), answer("", p.query, p.vars(hidden), hidden), "anonymous: %s", p.query)
		}
	}
}

// assertRoomHiddenOverWS checks that every subscription field naming room
// hidden answers on ws exactly as for room missing, which does not exist:
// one result with a NOT_FOUND error and no data, then complete.
func assertRoomHiddenOverWS(t *testing.T, ws *wsClient, hidden, missing string) {
	t.Helper()
	for i, sub := range []string{
		`subscription($r: ID!) { messageAdded(roomId: $r) { id } }`,
		`subscription($r: ID!) { presence(roomId: $r) { users { id } } }`,
		`subscription($r: ID!) { typing(roomId: $r) { typing } }`,
	} {
		var errs [2]string
		for j, id := range []string{hidden, missing} {
			opID := fmt.Sprintf("%d-%d", i, j)
			ws.subscribe(opID, sub, map[string]any{"r": id})
			// As in the reference server, a subscription whose resolver
			// refuses is one result with errors and no data, then complete.
			m := ws.read(5 * time.Second)
			require.Equal(t, "next", m.Type, "%s: %s", sub, m.Payload)
			var res struct {
				Data   json.RawMessage
				Errors []gqlError
			}
			require.NoError(t, json.Unmarshal(m.Payload, &res))
			assert.Equal(t, "null", string(res.Data))
			e := res.Errors
			require.Len(t, e, 1)
			require.Equal(t, "complete", ws.read(5*time.Second).Type)
			errs[j] = e[0].Code() + ": " + strings.ReplaceAll(e[0].Message, id, "ID")
		}
		assert.Equal(t, errs[1], errs[0], "over WebSocket: %s", sub)
		assert.True(t, strings.HasPrefix(errs[0], "NOT_FOUND"), errs[0])
	}
}

// TestPresenceCountsUsersNotTabs: three tabs of one user count once, until
// the last one goes, whether it closes cleanly, drops its TCP connection, or
// silently vanishes (then the keepalive notices).
func TestPresenceCountsUsersNotTabs(t *testing.T) {
	const keepalive = time.Second
	s := startServer(t, map[string]string{"WS_KEEPALIVE": keepalive.String()})
	general := s.generalRoom(t)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	watcher := s.chatWS(t, bob.token)
	watcher.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { roomId users { id name } } }`, map[string]any{"r": general.ID})
	first := until(watcher, "p", "presence", 5*time.Second, func(p presence) bool { return true })
	assert.Equal(t, general.ID, first.RoomID)
	assert.Equal(t, []string{"bob"}, names(first.Users), "the first event is the current list, the watcher included")

	online := func() []string {
		var d struct{ Online []user }
		s.mustDo(t, "", `query($r: ID!) { online(roomId: $r) { id name } }`, map[string]any{"r": general.ID}, &d)
		return names(d.Online)
	}
	is := func(want ...string) func(presence) bool {
		return func(p presence) bool { return slices.Equal(names(p.Users), want) }
	}

	tabs := make([]*wsClient, 3)
	for i := range tabs {
		tabs[i] = s.chatWS(t, alice.token)
		tabs[i].subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
	}
	until(watcher, "p", "presence", 5*time.Second, is("bob", "alice"))
	require.Eventually(t, func() bool { return slices.Equal(online(), []string{"bob", "alice"}) }, 5*time.Second, 20*time.Millisecond)

	// Closing two tabs (one cleanly, one by dropping TCP) leaves alice online.
	tabs[0].send("complete", "m", nil)
	_ = tabs[0].conn.Close()
	_ = tabs[1].conn.NetConn().Close()
	tabs[2].send("ping", "", nil) // a round trip on the last tab ...
	require.Equal(t, "pong", tabs[2].rawRead(5*time.Second).Type)
	time.Sleep(200 * time.Millisecond) // ... and time for the server to see the others go
	assert.Equal(t, []string{"bob", "alice"}, online(), "two of three tabs closed: alice still online")

	// The last tab vanishes without closing: it stops answering pings.
	start := time.Now()
	until(watcher, "p", "presence", 10*keepalive, is("bob"))
	// watcher answers pings in until/read; tabs[2] does not read at all.
	gone := time.Since(start)
	t.Logf("a vanished client went offline after %s (keepalive %s)", gone.Round(10*time.Millisecond), keepalive)
	assert.Less(t, gone, 3*keepalive+chat.DefaultLeaveGrace, "noticed within 1.4 keepalive intervals, a watchdog tick and the leave grace")
	assert.Equal(t, []string{"bob"}, online())
}

// TestTypingIndicator: a member's typing reaches the others, ends when they
// send, and ends by itself when they stop confirming it.
func TestTypingIndicator(t *testing.T) {
	s := startServer(t, nil)
	general := s.generalRoom(t)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	ws := s.chatWS(t, bob.token)
	ws.subscribe("t", `subscription($r: ID!) { typing(roomId: $r) { roomId user { name } typing expiresAt } }`, map[string]any{"r": general.ID})

	setTyping := func(on bool) {
		s.mustDo(t, alice.token, `mutation($r: ID!, $on: Boolean!) { setTyping(roomId: $r, typing: $on) }`, map[string]any{"r": general.ID, "on": on}, nil)
	}
	ev := primed[typingEvent](ws, "t", "typing", func() { setTyping(true) })
	assert.Equal(t, typingEvent{RoomID: general.ID, User: user{Name: "alice"}, Typing: true, ExpiresAt: ev.ExpiresAt}, ev)
	exp, err := time.Parse(time.RFC3339, ev.ExpiresAt)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(6*time.Second), exp, 2*time.Second, "the indicator lasts a few seconds unless renewed")

	s.postMessage(t, alice.token, general.ID, "sent")
	ev = until(ws, "t", "typing", 5*time.Second, func(e typingEvent) bool { return !e.Typing })
	assert.Equal(t, "alice", ev.User.Name, "sending ends the indicator")

	// Started again and never confirmed: the server ends it by itself.
	setTyping(true)
	start := time.Now()
	until(ws, "t", "typing", 5*time.Second, func(e typingEvent) bool { return e.Typing })
	ev = until(ws, "t", "typing", 15*time.Second, func(e typingEvent) bool { return !e.Typing })
	assert.Equal(t, "alice", ev.User.Name, "it expired")
	t.Logf("an unconfirmed indicator ended after %s", time.Since(start).Round(100*time.Millisecond))
	assert.InDelta(t, 6, time.Since(start).Seconds(), 1.5)
}

// TestTypingCoalesced: a client that sends setTyping 50 times in a second
// makes the other members hear of it at most twice, and its stop at once.
func TestTypingCoalesced(t *testing.T) {
	s := startServer(t, map[string]string{"LIMIT_TYPING": "0", "LIMIT_REQUESTS": "0"}) // the flood is the point
	general := s.generalRoom(t)
	alice, bob, carol := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")
	ws := s.chatWS(t, bob.token)
	ws.subscribe("t", `subscription($r: ID!) { typing(roomId: $r) { user { name } typing } }`, map[string]any{"r": general.ID})
	setTyping := func(who chatUser, on bool) {
		s.mustDo(t, who.token, `mutation($r: ID!, $on: Boolean!) { setTyping(roomId: $r, typing: $on) }`, map[string]any{"r": general.ID, "on": on}, nil)
	}
	// The subscription runs once carol's typing reaches it; her stop clears the way.
	primed[typingEvent](ws, "t", "typing", func() { setTyping(carol, true) })
	setTyping(carol, false)
	until(ws, "t", "typing", 5*time.Second, func(e typingEvent) bool { return e.User.Name == "carol" && !e.Typing })

	start := time.Now()
	for i := range 50 {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)))
		setTyping(alice, true)
	}
	sent := time.Since(start)
	setTyping(alice, false)
	var starts []typingEvent
	stop := until(ws, "t", "typing", 5*time.Second, func(e typingEvent) bool {
		if e.Typing {
			starts = append(starts, e)
		}
		return !e.Typing
	})
	t.Logf("50 setTyping(true) in %s reached a subscriber as %d typing events", sent.Round(time.Millisecond), len(starts))
	assert.Equal(t, typingEvent{User: user{Name: "alice"}, Typing: false}, stop, "the stop is delivered")
	assert.NotEmpty(t, starts, "she was shown typing")
	assert.LessOrEqual(t, len(starts), 2, "at most once a second")
	for _, e := range starts {
		assert.Equal(t, "alice", e.User.Name)
	}
}

// TestUnreadCountsAndRoomsChanged: the room list follows new rooms, new
// direct rooms, new messages and reads in other tabs, live.
func TestUnreadCountsAndRoomsChanged(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	ws := s.chatWS(t, bob.token)
	ws.subscribe("r", `subscription { roomsChanged { `+roomFields+` } }`, nil)
	general := s.generalRoom(t)
	primed[room](ws, "r", "roomsChanged", func() {
		s.mustDo(t, bob.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
	})

	ops := s.createRoom(t, alice.token, "ops")
	got := until(ws, "r", "roomsChanged", 5*time.Second, func(r room) bool { return r.ID == ops.ID })
	assert.Equal(t, room{ID: ops.ID, Name: "ops"}, got, "a new public room appears")

	s.postMessage(t, alice.token, ops.ID, "one")
	s.postMessage(t, alice.token, ops.ID, "two")
	got = until(ws, "r", "roomsChanged", 5*time.Second, func(r room) bool { return r.ID == ops.ID && r.UnreadCount == 2 })
	assert.Equal(t, 2, got.UnreadCount)

	// Another tab of bob's reads the room: this one's badge clears too.
	var d struct{ MarkRoomRead room }
	s.mustDo(t, bob.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { `+roomFields+` } }`, map[string]any{"r": ops.ID}, &d)
	assert.Equal(t, 0, d.MarkRoomRead.UnreadCount)
	until(ws, "r", "roomsChanged", 5*time.Second, func(r room) bool { return r.ID == ops.ID && r.UnreadCount == 0 })

	// Bob's own messages are never unread for him.
	s.postMessage(t, bob.token, ops.ID, "mine")
	list := s.rooms(t, bob.token, "")
	i := slices.IndexFunc(list, func(r room) bool { return r.ID == ops.ID })
	require.GreaterOrEqual(t, i, 0)
	assert.Equal(t, 0, list[i].UnreadCount)

	// A direct room alice opens with bob appears in bob's list, named after her.
	direct := s.openDirect(t, alice.token, bob.ID)
	got = until(ws, "r", "roomsChanged", 5*time.Second, func(r room) bool { return r.ID == direct.ID })
	assert.Equal(t, room{ID: direct.ID, Name: "alice", Direct: true}, got)

	// The list, loaded in one go: each room's own count, each direct room
	// named after its other member, for each of the two.
	s.postMessage(t, alice.token, direct.ID, "psst")
	s.postMessage(t, alice.token, ops.ID, "three")
	lists := map[string][]room{}
	for _, u := range []chatUser{alice, bob} {
		lists[u.Name] = s.rooms(t, u.token, "")
	}
	general = s.generalRoom(t)
	// Each part of a list is ordered by the rooms' activity, which these
	// rooms had within the same second: compare the parts as sets.
	assert.ElementsMatch(t, []room{{ID: general.ID, Name: "general"}, {ID: ops.ID, Name: "ops", UnreadCount: 1}, {ID: direct.ID, Name: "alice", Direct: true, UnreadCount: 1}}, lists["bob"],
		"bob is in all three: he read general and ops")
	require.Len(t, lists["alice"], 3)
	assert.ElementsMatch(t, []room{{ID: ops.ID, Name: "ops"}, {ID: direct.ID, Name: "bob", Direct: true}}, lists["alice"][:2],
		"alice's rooms first: the room she created, her direct room; posting marked them read up to her own messages")
	assert.Equal(t, room{ID: general.ID, Name: "general"}, lists["alice"][2], "then general, which she never opened")
}

// TestRefreshSession: a fresh token for the same user, before the old one
// expires.
func TestRefreshSession(t *testing.T) {
	s := startServer(t, nil)
	alice := s.chatUser(t, "alice")
	var d struct {
		RefreshSession struct {
			Token     string
			ExpiresAt string
			User      user
		}
	}
	s.mustDo(t, alice.token, `mutation { refreshSession { token expiresAt user { id name } } }`, nil, &d)
	assert.NotEqual(t, alice.token, d.RefreshSession.Token)
	assert.Equal(t, alice.user, d.RefreshSession.User)
	var me struct{ Me user }
	s.mustDo(t, d.RefreshSession.Token, `{ me { id name } }`, nil, &me)
	assert.Equal(t, alice.user, me.Me, "the new token identifies the same user")

	r := s.do(t, "", `mutation { refreshSession { token } }`, nil)
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code())
}

// TestPresenceGivesTheFirstFewAndTheCount: a watcher of a busy room may ask
// for the first users only, and still knows how many are online.
func TestPresenceGivesTheFirstFewAndTheCount(t *testing.T) {
	s := startServer(t, nil)
	general := s.generalRoom(t)
	alice, bob, cid := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "cid")
	online := func() []string {
		var d struct{ Online []user }
		s.mustDo(t, "", `query($r: ID!) { online(roomId: $r) { id name } }`, map[string]any{"r": general.ID}, &d)
		return names(d.Online)
	}
	// alice, then bob: the order they come online is the order listed.
	for i, u := range []chatUser{alice, bob} {
		s.chatWS(t, u.token).subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id } }`, map[string]any{"r": general.ID})
		require.Eventually(t, func() bool { return len(online()) == i+1 }, 5*time.Second, 10*time.Millisecond)
	}
	type few struct {
		Count int    `json:"count"`
		Users []user `json:"users"`
	}
	watcher := s.chatWS(t, cid.token)
	watcher.subscribe("p", `subscription($r: ID!) { presence(roomId: $r) { count users(first: 2) { name } } }`, map[string]any{"r": general.ID})
	got := until(watcher, "p", "presence", 5*time.Second, func(p few) bool { return p.Count == 3 })
	assert.Equal(t, []string{"alice", "bob"}, names(got.Users), "the first two, in the order they came online")

	watcher.subscribe("bad", `subscription($r: ID!) { presence(roomId: $r) { users(first: -1) { name } } }`, map[string]any{"r": general.ID})
	m := watcher.read(5 * time.Second)
	for m.ID != "bad" {
		m = watcher.read(5 * time.Second)
	}
	assert.Contains(t, string(m.Payload), "BAD_USER_INPUT")
}

// TestRoomListWatchersShareTheirReads: a message in a public room changes
// every signed-in watcher's room list; each gets its own unread count and
// the new last message, and the reads behind them are shared: a handful of
// statements per message, not three per watcher.
func TestRoomListWatchersShareTheirReads(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_MESSAGES": "0", "LIMIT_SIGNINS": "0"}) // the watchers sign in from one address
	general := s.generalRoom(t)
	poster := s.chatUser(t, "poster")
	type entry struct {
		room
		LastMessage *struct{ Text string } `json:"lastMessage"`
	}
	const watchers = 30
	clients := make([]*wsClient, watchers)
	for i := range clients {
		u := s.chatUser(t, fmt.Sprintf("watcher %d", i))
		clients[i] = s.chatWS(t, u.token)
		clients[i].subscribe("r", `subscription { roomsChanged { `+roomFields+` lastMessage { text } } }`, nil)
	}
	// Every watcher is live once it has seen a message.
	var posted atomic.Int64
	for _, c := range clients {
		primed[entry](c, "r", "roomsChanged", func() {
			s.postMessage(t, poster.token, general.ID, "prime")
			posted.Add(1)
		})
	}

	// Each watcher ends on the state after the last of those messages (an
	// event may show a newer last message than its count: the next one
	// catches up).
	settled := func(text string, unread int64) func(entry) bool {
		return func(e entry) bool {
			return e.LastMessage != nil && e.LastMessage.Text == text && int64(e.UnreadCount) == unread
		}
	}
	for _, c := range clients {
		until(c, "r", "roomsChanged", 5*time.Second, settled("prime", posted.Load()))
	}
	time.Sleep(100 * time.Millisecond) // and anything still queued behind that

	before := s.metric(t, `switchboard_database_statements_total`)
	s.postMessage(t, poster.token, general.ID, "counted")
	for _, c := range clients {
		got := until(c, "r", "roomsChanged", 5*time.Second, settled("counted", posted.Load()+1))
		assert.Equal(t, general.ID, got.ID)
	}
	statements := s.metric(t, `switchboard_database_statements_total`) - before
	t.Logf("one message to %d room-list watchers: %.0f statements", watchers, statements)
	assert.Less(t, statements, float64(watchers), "the watchers' reads are batched (three each would be %d)", 3*watchers)
}

// TestRoomListReadsAreBatched: the rooms query reads each of its fields for
// the whole page at once (the direct rooms' members, the unread counts, the
// last messages, the joined flags): the same statements however long the
// list, not a few per room.
func TestRoomListReadsAreBatched(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_MESSAGES": "0", "LIMIT_SIGNINS": "0", "LIMIT_ROOMS": "0"}) // the rooms' members sign in from one address
	alice := s.chatUser(t, "alice")
	const query = `{ rooms(first: 100) { edges { node {
		id name direct members { id name } unreadCount joined lastMessage { id text author { name } } createdAt activeAt
	} } } }`
	// grow adds public and direct rooms with a message each, then counts
	// the statements of alice's room list.
	grow := func(public, direct int) (rooms int, statements float64) {
		for i := range public {
			r := s.createRoom(t, alice.token, fmt.Sprintf("room %d of %d", i, public))
			s.postMessage(t, alice.token, r.ID, "hello")
		}
		for i := range direct {
			peer := s.chatUser(t, fmt.Sprintf("peer %d of %d", i, direct))
			r := s.openDirect(t, alice.token, peer.ID)
			s.postMessage(t, peer.token, r.ID, "hi alice")
		}
		// The fewest of three reads: a statement of the server's own
		// (a session check, a poll) may fall in one of them.
		var d struct{ Rooms roomPage }
		statements = math.Inf(1)
		for range 3 {
			before := s.idleStatements(t) // the posts' own work stays out
			s.mustDo(t, alice.token, query, nil, &d)
			statements = min(statements, s.metric(t, `switchboard_database_statements_total`)-before)
		}
		return len(d.Rooms.Edges), statements
	}
	n1, small := grow(5, 4)
	n2, large := grow(4, 16)
	t.Logf("rooms query: %d rooms (4 direct), %.0f statements; %d rooms (20 direct), %.0f statements", n1, small, n2, large)
	assert.LessOrEqual(t, large, small, "as many statements for %d rooms as for %d: no read per room", n2, n1)
}

// TestRoomListReadsFollowTheSelection: the rooms query reads a page's
// fields by what the operation selects on its nodes, so a field selected
// through a named or inline fragment, or kept by @include, still comes
// with its value, and one left out by @include(if: false) is not there.
func TestRoomListReadsFollowTheSelection(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false"})
	alice, bob := s.chatUser(t, "alice"), s.chatUser(t, "bob")
	direct := s.openDirect(t, alice.token, bob.ID)
	s.postMessage(t, bob.token, direct.ID, "hi alice")
	const query = `query($last: Boolean!) { rooms(first: 10) { ...Page } }
		fragment Page on RoomConnection { edges { node { id unreadCount ... on Room { name } ...Last } } }
		fragment Last on Room { lastMessage @include(if: $last) { text } }`
	for _, last := range []bool{true, false} {
		var d struct {
			Rooms struct {
				Edges []struct {
					Node struct {
						ID          string
						Name        string
						UnreadCount int
						LastMessage *struct{ Text string }
					}
				}
			}
		}
		s.mustDo(t, alice.token, query, map[string]any{"last": last}, &d)
		found := false
		for _, e := range d.Rooms.Edges {
			if e.Node.ID != direct.ID {
				continue
			}
			found = true
			assert.Equal(t, "bob", e.Node.Name, "a direct room is named after the other member")
			assert.Equal(t, 1, e.Node.UnreadCount)
			if last {
				require.NotNil(t, e.Node.LastMessage, "selected through a fragment and @include")
				assert.Equal(t, "hi alice", e.Node.LastMessage.Text)
			} else {
				assert.Nil(t, e.Node.LastMessage, "left out by @include(if: false)")
			}
		}
		assert.True(t, found, "alice's direct room is on her list")
	}
}

// TestPresenceIsComputedOncePerSelection: watchers of a room's presence
// that ask for the same selection share one execution and one encoding per
// change (one shared subscription for all of them, whoever they are);
// another selection gets its own. Sharing keeps each watcher online for as
// long as its own subscription lasts, and its messageAdded subscription too.
func TestPresenceIsComputedOncePerSelection(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_SIGNINS": "0", "LIMIT_CONNS_PER_USER": "0"})
	general := s.generalRoom(t)
	type counted struct {
		Count int `json:"count"`
	}
	const watchers = 12
	clients := make([]*wsClient, watchers)
	for i := range clients {
		u := s.chatUser(t, fmt.Sprintf("watcher %d", i))
		clients[i] = s.chatWS(t, u.token)
		query := `subscription($r: ID!) { presence(roomId: $r) { count } }`
		if i%4 == 3 {
			query = `subscription($r: ID!) { presence(roomId: $r) { count users(first: 3) { name } } }`
		}
		clients[i].subscribe("p", query, map[string]any{"r": general.ID})
		until(clients[i], "p", "presence", 5*time.Second, func(counted) bool { return true })
	}
	for _, c := range clients {
		until(c, "p", "presence", 5*time.Second, func(p counted) bool { return p.Count == watchers })
	}
	waitMetric(t, s, "switchboard_shared_subscriptions", 2)

	// A member who subscribes to the room's messages comes online for
	// every watcher, and stays online once that subscription is shared.
	alice := s.chatUser(t, "alice")
	tab := s.chatWS(t, alice.token)
	tab.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r) { id text } }`, map[string]any{"r": general.ID})
	for _, c := range clients {
		until(c, "p", "presence", 5*time.Second, func(p counted) bool { return p.Count == watchers+1 })
	}
	s.postMessage(t, alice.token, general.ID, "shared now")
	until(tab, "m", "messageAdded", 5*time.Second, func(m struct{ Text string }) bool { return m.Text == "shared now" })
	waitMetric(t, s, "switchboard_shared_subscriptions", 3)
	time.Sleep(3 * time.Second) // longer than the leave grace: a private execution that ended would have taken alice offline
	var d struct{ Online []user }
	s.mustDo(t, "", `query($r: ID!) { online(roomId: $r) { id name } }`, map[string]any{"r": general.ID}, &d)
	assert.Len(t, d.Online, watchers+1, "every subscriber is still online")

	_ = tab.conn.Close()
	for _, c := range clients {
		until(c, "p", "presence", 10*time.Second, func(p counted) bool { return p.Count == watchers })
	}
}

// TestRoomListsShareOneGroup: every user's roomsChanged subscriptions are
// served by one shared group from the moment they start, and each tab
// still sees its own list: its own unread counts, a direct room under the
// other member's name, and nothing of the direct rooms of others.
func TestRoomListsShareOneGroup(t *testing.T) {
	s := startServer(t, map[string]string{"DEMO_FEED": "false", "LIMIT_MESSAGES": "0", "LIMIT_SIGNINS": "0"})
	general := s.generalRoom(t)
	alice, bob, carol := s.chatUser(t, "alice"), s.chatUser(t, "bob"), s.chatUser(t, "carol")
	for _, u := range []chatUser{alice, bob, carol} {
		s.mustDo(t, u.token, `mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}, nil)
	}
	open := func(u chatUser, proto string) *wsClient {
		c := dialWS(t, s, proto, nil)
		c.init(u.token)
		c.subscribe("r", `subscription { roomsChanged { `+roomFields+` lastMessage { text } } }`, nil)
		return c
	}
	aliceTabs := []*wsClient{open(alice, "graphql-transport-ws"), open(alice, "graphql-ws")}
	bobTab, carolTab := open(bob, "graphql-transport-ws"), open(carol, "graphql-transport-ws")
	waitMetric(t, s, "switchboard_shared_subscriptions", 1) // before any event
	// Every tab's subscription is running before the first message: a list
	// changes for the users watching at the moment of the change, and
	// graphql-ws tells a client nothing when its subscription starts.
	waitMetric(t, s, `switchboard_subscriptions{field="roomsChanged"}`, 4)

	type entry struct {
		room
		LastMessage *struct{ Text string } `json:"lastMessage"`
	}
	// showing reads c's entries until one shows the message text in roomID.
	showing := func(c *wsClient, roomID, text string) entry {
		return until(c, "r", "roomsChanged", 5*time.Second, func(e entry) bool {
			return e.ID == roomID && e.LastMessage != nil && e.LastMessage.Text == text
		})
	}
	s.postMessage(t, alice.token, general.ID, "hello")
	for i, c := range aliceTabs {
		assert.Zero(t, showing(c, general.ID, "hello").UnreadCount, "alice's tab %d: her own message", i)
	}
	for _, c := range []*wsClient{bobTab, carolTab} {
		assert.Equal(t, 1, showing(c, general.ID, "hello").UnreadCount, "bob's and carol's lists")
	}

	direct := s.openDirect(t, bob.token, carol.ID)
	s.postMessage(t, bob.token, direct.ID, "psst")
	for c, name := range map[*wsClient]string{bobTab: "carol", carolTab: "bob"} {
		got := showing(c, direct.ID, "psst")
		assert.Equal(t, name, got.Name, "a direct room is named after the other member")
		assert.Equal(t, map[string]int{"carol": 0, "bob": 1}[name], got.UnreadCount)
	}
	s.postMessage(t, carol.token, general.ID, "again")
	for i, c := range aliceTabs {
		var got entry
		c.nextData("r", "roomsChanged", &got, 5*time.Second)
		assert.Equal(t, general.ID, got.ID, "alice's tab %d saw nothing of bob and carol's room", i)
		if got.ID != general.ID || got.LastMessage.Text != "again" {
			got = showing(c, general.ID, "again")
		}
		assert.Equal(t, 1, got.UnreadCount)
	}
	assert.Equal(t, 1.0, s.metric(t, "switchboard_shared_subscriptions"), "one group serves every room list")
}
