package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserFeedSurvivesRestart drives the real page in headless Chromium:
// two users in separate browser contexts sign in through the form, one posts
// a status the other sees live (rendered as text, not HTML), then the server
// goes away, a status is posted while both pages are disconnected, and the
// server comes back on the same address and database. Both pages must
// reconnect by themselves, replay the missed status through statusPosted's
// `after`, and show every status exactly once, newest first.
func TestBrowserFeedSurvivesRestart(t *testing.T) {
	chromium := findChromium(t)

	srv := startServer(t, map[string]string{"ADDR": freeLoopbackAddr(t)})
	srv.logsOnFailure(t)

	browser := startBrowser(t, chromium)
	alice := openTab(t, browser, "A", srv.URL)
	bob := openTab(t, browser, "B", srv.URL)
	tabs := []*browserTab{alice, bob}

	alice.signIn("Alice")
	bob.signIn("Bob")

	// 1. A status posted in one tab appears live in both, once, as text.
	const hello = "hello from Alice <b>not bold</b>"
	alice.post(hello, false)
	for _, tab := range tabs {
		tab.waitForText(hello, browserStepTimeout)
		feed := tab.feed()
		require.Len(t, feed, 1, "%s feed", tab.name)
		assert.Equal(t, "Alice", feed[0].Author, "%s author", tab.name)
		assert.Equal(t, hello, feed[0].Text, "%s text", tab.name)
		assert.Zero(t, tab.count(`#statuses b`), "%s: the status's markup was parsed as HTML", tab.name)
	}

	// 2–4. The server goes away and both pages notice; while their address
	// is unreachable, a status is posted through another server on the same
	// database; the server comes back on the same address, and both pages
	// reconnect on their own and catch up with what they missed.
	const outage = "posted during the outage"
	var posted status
	srv = restartWhileOffline(t, srv, tabs, func(side *testServer) {
		posted = side.post(t, side.signIn(t, "Carol"), outage)
		for _, tab := range tabs {
			assert.Zero(t, tab.textCount(outage), "%s shows a status it could not have received", tab.name)
			assert.Equal(t, "reconnecting", tab.connState(), "%s connection state during the outage", tab.name)
		}
	})
	for _, tab := range tabs {
		tab.waitForText(outage, browserStepTimeout)
	}

	// 5. The resumed subscription is live, and posting still works: Bob
	// posts with the Enter key. The subscription delivers in order, so once
	// this arrives any late duplicate replay would have arrived too.
	const back = "back online"
	bob.post(back, true)
	for _, tab := range tabs {
		tab.waitForText(back, browserStepTimeout)
	}

	// 6. Every status exactly once, newest first, ids as the server has them.
	serverFeed := srv.statusFeed(t)
	require.Len(t, serverFeed, 3, "statuses in the database")
	assert.Equal(t, posted.ID, serverFeed[1].ID, "the status posted during the outage")
	require.Equal(t, []feedItem{
		{ID: serverFeed[0].ID, Author: "Bob", Text: back},
		{ID: serverFeed[1].ID, Author: "Carol", Text: outage},
		{ID: serverFeed[2].ID, Author: "Alice", Text: hello},
	}, serverFeed, "statuses on the server, newest first")

	for _, tab := range tabs {
		assert.Equal(t, serverFeed, tab.feed(), "%s feed (newest first, each once)", tab.name)
		assert.Zero(t, tab.count(`#statuses b`), "%s: a status's markup was parsed as HTML", tab.name)
		assert.Equal(t, "connected", tab.connState(), "%s connection state", tab.name)
		assert.Empty(t, tab.value("#status-text"), "%s: the compose box was not cleared", tab.name)
		tab.checkConsole()
	}

	// Let the arrival highlights fade before the screenshot.
	alice.screenshotWhenStill()
}

// statusFeed returns the newest ten statuses as the server has them, newest
// first, in the page's terms.
func (s *testServer) statusFeed(tb testing.TB) []feedItem {
	tb.Helper()
	var d struct {
		Statuses struct {
			Edges []struct{ Node status }
		}
	}
	s.mustDo(tb, "", `query { statuses(first: 10) { edges { node { `+statusFields+` } } } }`, nil, &d)
	var items []feedItem
	for _, e := range d.Statuses.Edges {
		items = append(items, feedItem{ID: e.Node.ID, Author: e.Node.Author.Name, Text: e.Node.Text})
	}
	return items
}

// TestBrowserSignOutEndsTheGuestSession: a guest who signs out on the page
// ends their session on the server, so the token the page held (a copy of
// it in another tab or a stolen one alike) is refused at once; the page
// itself is signed out.
func TestBrowserSignOutEndsTheGuestSession(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, nil)
	srv.logsOnFailure(t)
	tab := openTab(t, startBrowser(t, chromium), "G", srv.URL)
	tab.signIn("Gwen")
	token := tab.token()
	var me struct{ Me struct{ Name string } }
	srv.mustDo(t, token, `{ me { name } }`, nil, &me)
	require.Equal(t, "Gwen", me.Me.Name, "the page's token works")

	tab.do("sign out", chromedp.Click(chromedp.CSS("#signout")))
	tab.waitFor("the sign-in form again", `!document.getElementById('signin-form').hidden`, browserStepTimeout)
	require.Eventually(t, func() bool { return srv.do(t, token, `{ me { name } }`, nil).Status == http.StatusUnauthorized },
		5*time.Second, 50*time.Millisecond, "the guest's token is refused once the page signed out")
}
