package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserRoomList drives the page's room list in headless Chromium with
// 48 rooms: a signed-in reader sees the first page of 20; scrolling to the
// list's end loads the next page and the "More rooms" button the last, each
// room once, in the server's order. A message in an old room moves it to
// the top live. Typing in the search box lists the matching rooms only (a new one
// that matches arrives live, one that does not stays out), says so when
// none match, and clearing it brings the list back.
func TestBrowserRoomList(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, map[string]string{"ADDR": freeLoopbackAddr(t), "LIMIT_ROOMS": "0"})
	srv.logsOnFailure(t)
	owner := srv.chatUser(t, "owner")
	ids := map[string]string{}
	for i := range 45 {
		name := fmt.Sprintf("room %02d", i)
		ids[name] = srv.createRoom(t, owner.token, name).ID
	}
	srv.createRoom(t, owner.token, "ops alpha")
	srv.createRoom(t, owner.token, "ops beta")

	browser := startBrowser(t, chromium)
	tab := openTab(t, browser, "R", srv.URL)
	tab.logChatOnFailure()
	tab.signIn("Reader")

	// 1. The first page.
	tab.waitFor("the first page of rooms", roomCountIs(20)+` && !document.getElementById('more-rooms').hidden`, browserStepTimeout)
	assert.Equal(t, srv.roomIDs(t, tab.token(), 20), tab.listedRoomIDs(), "the page shows the server's first page, in order")

	// 2. Scrolling to the end of the list loads the next page; the button
	// the last one.
	tab.do("scroll the room list to its end", chromedp.Evaluate[chromedp.Void](
		`document.getElementById('rooms-scroll').scrollTop = document.getElementById('rooms-scroll').scrollHeight`))
	tab.waitFor("the second page of rooms", roomCountIs(40), browserStepTimeout)
	// Pressed in the page: chromedp.Click first scrolls the button into
	// view, which (at the list's end) loads the next page itself, and the
	// click then lands on a room of that page where the button was.
	tab.do("press More rooms", chromedp.Evaluate[chromedp.Void](`document.getElementById('more-rooms').click()`))
	tab.waitFor("every room", roomCountIs(48)+` && document.getElementById('more-rooms').hidden`, browserStepTimeout)
	listed := tab.listedRoomIDs()
	assert.Equal(t, srv.roomIDs(t, tab.token(), 100), listed, "every room once, in the server's order")

	// 3. A message in the oldest of the owner's rooms moves it to the top.
	srv.postMessage(t, owner.token, ids["room 00"], "back to life")
	moved := time.Now()
	tab.waitFor("room 00 to move up", `document.querySelector('#rooms > li')?.dataset.roomId === `+strconv.Quote(ids["room 00"]),
		browserStepTimeout)

	// 4. Search.
	tab.searchRooms("ops")
	tab.waitForRoomNames("ops beta", "ops alpha")
	assert.True(t, evalIn[bool](tab, `document.getElementById('more-rooms').hidden`))
	srv.createRoom(t, owner.token, "misc")
	srv.createRoom(t, owner.token, "ops gamma")
	tab.waitForRoomNames("ops gamma", "ops beta", "ops alpha") // and not misc, announced before
	tab.searchRooms("zzz")
	tab.waitFor("no room by that name", roomCountIs(0)+` && !document.getElementById('rooms-empty').hidden`, browserStepTimeout)
	// A list orders rooms by their activity up to a second before it is
	// read (docs/design.md, "Room lists page by keyset"): room 00's move is
	// in every list read from a second after it on.
	time.Sleep(time.Until(moved.Add(1100 * time.Millisecond)))
	tab.searchRooms("")
	tab.waitFor("the list back", roomCountIs(20)+` && document.getElementById('rooms-empty').hidden &&
		!document.getElementById('more-rooms').hidden`, browserStepTimeout)
	assert.Equal(t, srv.roomIDs(t, tab.token(), 20), tab.listedRoomIDs())
	tab.checkConsole()
}

// roomCountIs is an expression true when the room list shows n rooms.
func roomCountIs(n int) string {
	return `document.querySelectorAll('#rooms .room-link').length === ` + strconv.Itoa(n)
}

// roomIDs returns the ids of the first n rooms of token's list.
func (s *testServer) roomIDs(tb testing.TB, token string, n int) []string {
	tb.Helper()
	var out []string
	for _, e := range s.roomPage(tb, token, n, "", "").Edges {
		out = append(out, e.Node.ID)
	}
	return out
}

// listedRoomIDs returns the ids of the rooms the page lists, top to bottom.
func (b *browserTab) listedRoomIDs() []string {
	b.t.Helper()
	return evalIn[[]string](b, `[...document.querySelectorAll('#rooms .room-link')].map((r) => r.dataset.roomId)`)
}

// searchRooms puts search into the room search box, as typing would.
func (b *browserTab) searchRooms(search string) {
	b.t.Helper()
	b.do("search rooms for "+strconv.Quote(search), chromedp.Evaluate[chromedp.Void](
		`(() => { const box = document.getElementById('room-search'); box.value = `+strconv.Quote(search)+
			`; box.dispatchEvent(new Event('input', { bubbles: true })); })()`))
}

// waitForRoomNames waits until the room list shows exactly these rooms, in
// this order.
func (b *browserTab) waitForRoomNames(names ...string) {
	b.t.Helper()
	want, err := json.Marshal(names)
	require.NoError(b.t, err)
	b.waitFor("the room list to read "+string(want),
		`JSON.stringify([...document.querySelectorAll('#rooms .room-name')].map((n) => n.textContent)) === `+
			strconv.Quote(string(want)), browserStepTimeout)
}
