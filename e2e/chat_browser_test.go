package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserChat drives the page's chat panel in headless Chromium with two
// users in separate browser contexts, both signed in as guests through the
// page: presence follows Alice into and out of general as Bob watches; Bob
// sees "Alice is typing…" while she types and no longer once she sends; her
// message shows in Bob's history once, as text; a message in another room
// raises Bob's unread badge for it, and opening that room takes it back to
// none (on the page and on the server). Then the server restarts, a message
// is posted while the pages are offline, and both pages show it exactly
// once after reconnecting on their own. Last, a room with more than a page
// of history loads its older messages as Bob scrolls up.
func TestBrowserChat(t *testing.T) {
	chromium := findChromium(t)

	// The scroll-back part posts 55 messages at once: no message rate limit.
	srv := startServer(t, map[string]string{"ADDR": freeLoopbackAddr(t), "LIMIT_MESSAGES": "0"})
	srv.logsOnFailure(t)

	browser := startBrowser(t, chromium)
	alice := openTab(t, browser, "A", srv.URL)
	bob := openTab(t, browser, "B", srv.URL)
	for _, tab := range []*browserTab{alice, bob} {
		tab.logChatOnFailure()
	}
	alice.signIn("Alice")
	bob.signIn("Bob")

	// 1. Bob opens general; Alice creates a room, which opens it instead of
	// general, so only Bob is online in general.
	general := bob.openRoom("general")
	alice.createRoom("random")
	random := bob.waitForRoom("random")
	bob.waitUnread(random, 0)
	bob.waitOnline("Bob")

	// 2. Alice opens general: Bob sees her come online.
	require.Equal(t, general, alice.openRoom("general"))
	bob.waitOnline("Bob", "Alice")

	// 3. Alice types: Bob sees it, until she sends.
	const hello = "hello <b>Bob</b>"
	alice.typeMessage(hello)
	bob.waitFor("Alice's typing indicator", typingIs("Alice is typing…"), browserStepTimeout)
	alice.sendMessage()
	bob.waitFor("the typing indicator to end and Alice's message to show",
		typingIs("")+` && `+chatTextCountJS+` === 1`, browserStepTimeout, chromedp.WithPollingArgs(hello))
	for _, tab := range []*browserTab{alice, bob} {
		assert.Equal(t, srv.history(t, bob.token(), general), tab.chatMessages(), "%s: general", tab.name)
		assert.Zero(t, tab.count(`#messages b`), "%s: the message's markup was parsed as HTML", tab.name)
	}

	// 4. Alice posts in random: Bob's badge for it goes up; opening the room
	// reads it.
	alice.openRoom("random")
	const question = "anyone in random?"
	alice.typeMessage(question)
	alice.sendMessage()
	bob.waitUnread(random, 1)
	assert.Equal(t, "0", bob.unread(general), "Bob's badge for general, which he has open")
	bob.openRoom("random")
	bob.waitUnread(random, 0)
	bob.waitForMessage(question)
	// The page hides the open room's badge at once and marks it read on the
	// server right after: wait for that request to land.
	noneUnread := map[string]int{general: 0, random: 0}
	assert.Eventually(t, func() bool { return maps.Equal(noneUnread, srv.unreadCounts(t, bob.token())) },
		browserStepTimeout, 50*time.Millisecond, "Bob's unread counts on the server: %v", noneUnread)

	// 5. The server restarts while a message is posted in random: both
	// pages catch up with it.
	srv = chatCatchesUpAfterRestart(t, srv, alice, bob, random)

	// 6. Scroll-back, in a room Alice fills.
	chatScrollsBack(t, srv, alice.token(), bob)

	alice.screenshotWhenStill()
}

// chatCatchesUpAfterRestart is TestBrowserChat's fifth step, with alice and
// bob in room random: the server goes away; a message is posted in random
// meanwhile through another server on the same database; the pages come
// back on their own and show it once, and a message bob sends after the
// catch-up reaches alice, each message once, oldest first. It returns the
// restarted server.
func chatCatchesUpAfterRestart(t *testing.T, srv *testServer, alice, bob *browserTab, random string) *testServer {
	t.Helper()
	aliceToken := alice.token()
	const missed = "posted while you were away"
	srv = restartWhileOffline(t, srv, []*browserTab{alice, bob}, func(side *testServer) {
		side.mustDo(t, aliceToken, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`,
			map[string]any{"r": random, "t": missed}, nil)
	})
	for _, tab := range []*browserTab{alice, bob} {
		tab.waitForMessage(missed)
	}
	// A message sent after the catch-up arrives after any late replay would.
	const after = "and after"
	bob.typeMessage(after)
	bob.sendMessage()
	alice.waitForMessage(after)
	want := srv.history(t, bob.token(), random)
	require.Len(t, want, 3, "messages in random")
	for _, tab := range []*browserTab{alice, bob} {
		assert.Equal(t, want, tab.chatMessages(), "%s: random (each message once, oldest first)", tab.name)
		tab.checkConsole()
	}
	bob.waitUnread(random, 0)
	return srv
}

// chatScrollsBack is TestBrowserChat's sixth step: a room with more than a
// page of history (posted with token) shows reader the newest page;
// scrolling to the top loads the rest above it, in order, keeping the
// messages in view where they were.
func chatScrollsBack(t *testing.T, srv *testServer, token string, reader *browserTab) {
	t.Helper()
	var created struct{ CreateRoom struct{ ID string } }
	srv.mustDo(t, token, `mutation { createRoom(name: "archive") { id } }`, nil, &created)
	archive := created.CreateRoom.ID
	for i := 1; i <= historyPage+5; i++ {
		srv.mustDo(t, token, `mutation($r: ID!, $t: String!) { postMessage(roomId: $r, text: $t) { id } }`,
			map[string]any{"r": archive, "t": "archived " + strconv.Itoa(i)}, nil)
	}
	require.Equal(t, archive, reader.openRoom("archive"))
	want := srv.history(t, reader.token(), archive)
	require.Len(t, want, historyPage+5, "messages in archive")
	assert.Equal(t, want[5:], reader.chatMessages(), "the newest page of archive")
	reader.waitFor("the load-older button", `!document.getElementById('load-older').hidden`, browserStepTimeout)
	reader.do("scroll to the top", chromedp.Evaluate[chromedp.Void](`document.getElementById('messages-scroll').scrollTop = 0`))
	reader.waitFor("the older messages", `document.querySelectorAll('#messages > li').length === `+strconv.Itoa(len(want))+
		` && document.getElementById('load-older').hidden`, browserStepTimeout)
	assert.Equal(t, want, reader.chatMessages(), "all of archive, oldest first")
	assert.Positive(t, evalIn[float64](reader, `document.getElementById('messages-scroll').scrollTop`),
		"the history jumped to the top instead of keeping its place")
}

// historyPage is how many messages the page loads per history page
// (HISTORY_PAGE in chat.js).
const historyPage = 50

// chatTextCountJS counts the open room's messages whose text is args[0].
const chatTextCountJS = `[...document.querySelectorAll('#messages > li .text')].filter((p) => p.textContent === args[0]).length`

// roomLink is an expression for the room list button of the room named
// name (undefined while there is none).
func roomLink(name string) string {
	return `[...document.querySelectorAll('.room-link')].find((b) => b.querySelector('.room-name').textContent === ` +
		strconv.Quote(name) + `)`
}

// roomByID is an expression for the room list button of room id.
func roomByID(id string) string {
	return `document.querySelector('.room-link[data-room-id=` + strconv.Quote(id) + `]')`
}

// typingIs is an expression true when the typing line reads text.
func typingIs(text string) string {
	return `document.getElementById('typing').textContent === ` + strconv.Quote(text)
}

// waitForRoom waits until the room list shows a room named name, and
// returns its id.
func (b *browserTab) waitForRoom(name string) string {
	b.t.Helper()
	b.waitFor("room "+name+" in the room list", roomLink(name)+` !== undefined`, browserStepTimeout)
	return evalIn[string](b, roomLink(name)+`.dataset.roomId`)
}

// openRoom clicks a room in the list and waits until its history is shown
// and followed live; it returns the room's id.
func (b *browserTab) openRoom(name string) string {
	b.t.Helper()
	id := b.waitForRoom(name)
	b.do("open room "+name, chromedp.Click(chromedp.CSS(`.room-link[data-room-id="`+id+`"]`)))
	b.waitForOpenRoom(id)
	return id
}

// waitForOpenRoom waits until room id is open and followed live.
func (b *browserTab) waitForOpenRoom(id string) {
	b.t.Helper()
	b.waitFor("room "+id+" to open", `document.getElementById('chat-room').dataset.roomId === `+strconv.Quote(id)+
		` && document.getElementById('chat-room').dataset.state === 'live'`, browserStepTimeout)
}

// createRoom creates a room through the form (submitted with the Enter
// key) and waits until it is open.
func (b *browserTab) createRoom(name string) {
	b.t.Helper()
	b.do("create room "+name,
		chromedp.WaitVisible(chromedp.CSS("#room-name")),
		chromedp.SendKeys(chromedp.CSS("#room-name"), name+"\r"),
	)
	b.waitForOpenRoom(b.waitForRoom(name))
}

// typeMessage types text into the message box, without sending it.
func (b *browserTab) typeMessage(text string) {
	b.t.Helper()
	b.do("type a message",
		chromedp.WaitEnabled(chromedp.CSS("#message-text")),
		chromedp.SendKeys(chromedp.CSS("#message-text"), text),
	)
}

// sendMessage sends what the message box holds with the Enter key and waits
// until it shows in the history.
func (b *browserTab) sendMessage() {
	b.t.Helper()
	text := b.value("#message-text")
	b.do("press Enter", chromedp.KeyEvent("\r"))
	b.waitFor("the message box to clear after sending",
		`document.getElementById('message-text').value === '' && document.getElementById('message-error').hidden`,
		browserStepTimeout)
	b.waitForMessage(text)
}

// waitForMessage waits until the open room shows a message reading text.
func (b *browserTab) waitForMessage(text string) {
	b.t.Helper()
	b.waitFor("a message reading "+strconv.Quote(text), chatTextCountJS+` >= 1`, browserStepTimeout,
		chromedp.WithPollingArgs(text))
}

// chatMessages returns the open room's messages, top to bottom.
func (b *browserTab) chatMessages() []feedItem {
	b.t.Helper()
	return evalIn[[]feedItem](b, `[...document.querySelectorAll('#messages > li')].map((li) => ({
		id: li.dataset.id ?? '',
		author: li.querySelector('.author')?.textContent ?? '',
		text: li.querySelector('.text')?.textContent ?? '',
	}))`)
}

// waitOnline waits until the online list reads names, in this order.
func (b *browserTab) waitOnline(names ...string) {
	b.t.Helper()
	want, err := json.Marshal(names)
	require.NoError(b.t, err)
	b.waitFor("the online list to read "+string(want),
		`JSON.stringify([...document.querySelectorAll('#online-list > li')].map((li) => li.textContent)) === `+
			strconv.Quote(string(want)), browserStepTimeout)
}

// unread returns the unread count a room's entry shows ("0" when its badge
// is hidden).
func (b *browserTab) unread(id string) string {
	b.t.Helper()
	return evalIn[string](b, roomByID(id)+`.dataset.unread`)
}

// waitUnread waits until room id's badge shows n, or is hidden for 0.
func (b *browserTab) waitUnread(id string, n int) {
	b.t.Helper()
	badge := roomByID(id) + `?.querySelector('.badge')`
	expr := badge + `?.hidden === true`
	if n > 0 {
		expr = badge + `?.hidden === false && ` + badge + `.textContent === ` + strconv.Quote(strconv.Itoa(n))
	}
	b.waitFor("room "+id+"'s unread badge to show "+strconv.Itoa(n),
		expr+` && `+roomByID(id)+`.dataset.unread === `+strconv.Quote(strconv.Itoa(n)), browserStepTimeout)
}

// logChatOnFailure logs the chat panel's state when the test fails.
func (b *browserTab) logChatOnFailure() {
	b.t.Cleanup(func() {
		if !b.t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
			room: {...document.getElementById('chat-room').dataset},
			rooms: [...document.querySelectorAll('.room-link')].map((b) => b.dataset.roomId + ' ' + b.textContent),
			online: document.getElementById('online-list').textContent,
			typing: document.getElementById('typing').textContent,
			errors: ['chat-error', 'room-error', 'people-error', 'message-error']
				.map((id) => document.getElementById(id))
				.filter((e) => !e.hidden).map((e) => e.id + ': ' + e.textContent),
			messages: [...document.querySelectorAll('#messages > li')].map((li) => li.dataset.id + ' ' + li.textContent),
		}, null, 1)`))
		if err != nil {
			s = "unavailable: " + err.Error()
		}
		b.t.Logf("tab %s: chat state: %s", b.name, s)
	})
}
