package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestBrowserDashboardAndNotifications drives the page's dashboard, bell and
// admin panel in headless Chromium, with the demo feed off and a short
// dashboard interval. A KPI recorded through the API shows on a guest's
// page, and its next value replaces it without a reload, its sparkline
// grows and it becomes a top mover. The admin sends the guest a
// notification and one to everyone: the bell shows 2, in the guest's tab
// and in a second one signed in with the guest's token; reading one in the
// first tab takes both badges to 1 (and marks it read in the second tab's
// list), marking all read in the second takes both to 0. Last, the admin
// signs in with a token in a third tab: the admin panel records a KPI the
// guest sees as a new card, shows the server's error for a bad link, and
// sends a notification the guest receives live.
func TestBrowserDashboardAndNotifications(t *testing.T) {
	chromium := findChromium(t)

	dataDir := t.TempDir()
	srv := startServer(t, map[string]string{"DATA_DIR": dataDir, "DEMO_FEED": "false", "DASHBOARD_INTERVAL": "200ms"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)

	// 1. A recorded KPI shows on the page; its next value moves it live.
	srv.recordKPI(t, admin, map[string]any{"module": "finance", "key": "latency", "value": 120, "label": "Latency", "unit": "ms"})
	browser := startBrowser(t, chromium)
	gina := openTab(t, browser, "G", srv.URL)
	gina.logDashboardOnFailure()
	gina.signIn("Gina")
	gina.waitKPI("finance", "latency", "Latency", "120 ms")
	assert.Equal(t, "new", gina.kpiField("finance", "latency", ".kpi-change"), "a first value's change")
	assert.False(t, gina.visible("#admin-panel"), "a guest sees the admin panel")

	gina.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.testMark = 'not reloaded'`))
	srv.recordKPI(t, admin, map[string]any{"module": "finance", "key": "latency", "value": 135})
	gina.waitKPI("finance", "latency", "Latency", "135 ms")
	assert.True(t, strings.HasPrefix(gina.kpiField("finance", "latency", ".kpi-change"), "▲ +15"),
		"change after 120 → 135: %q", gina.kpiField("finance", "latency", ".kpi-change"))
	gina.waitFor("the sparkline to have both values", kpiRow("finance", "latency")+`?.querySelector('svg.spark').dataset.points === '2'`, browserStepTimeout)
	gina.waitFor("finance/latency among the top movers", `document.querySelector('#top-movers > li[data-module="finance"][data-key="latency"]') !== null`, browserStepTimeout)
	assert.NotEmpty(t, gina.kpiCardUpdated("finance"), "the card's updated time")
	assert.Equal(t, "not reloaded", evalIn[string](gina, `window.testMark`), "the page was reloaded")
	assert.GreaterOrEqual(t, srv.metric(t, `switchboard_websocket_compressed_connections`), 1.0,
		"the browser negotiated permessage-deflate: the KPI sets it showed came compressed")

	// 2. A notification to Gina and one to everyone: her badge shows 2, in
	// both of her tabs.
	ginaID := evalIn[string](gina, `JSON.parse(localStorage.getItem('switchboard.session')).user.id`)
	const personal, broadcast = "For Gina <b>only</b>", "Maintenance tonight"
	personalID := srv.sendNotification(t, admin, map[string]any{"userId": ginaID, "title": personal, "level": "WARNING"})
	srv.sendNotification(t, admin, map[string]any{"title": broadcast, "body": "From 22:00.", "link": "/status"})
	gina.waitBadge(2)
	gina2 := openTab(t, browser, "G2", srv.URL)
	gina2.signInWithToken(gina.token(), "Gina")
	gina2.waitBadge(2)

	gina.openBell()
	gina.waitFor("both notifications in the list", `document.querySelectorAll('#notif-list > li').length === 2`, browserStepTimeout)
	assert.Equal(t, []string{broadcast, personal}, gina.notificationTitles(), "the list, newest first")
	assert.Zero(t, gina.count(`#notif-list b`), "a title's markup was parsed as HTML")
	assert.Equal(t, "/status", evalIn[string](gina, `document.querySelector('#notif-list .notif-link')?.getAttribute('href') ?? ''`))

	// 3. Reading one in the first tab: both badges drop to 1, and the second
	// tab's list marks it read.
	gina2.openBell()
	gina2.waitFor("both notifications in the second tab's list", `document.querySelectorAll('#notif-list > li').length === 2`, browserStepTimeout)
	gina.do("click the personal notification", chromedp.Click(chromedp.CSS(notificationItem(personalID)+" .notif-main")))
	gina.waitFor("it to show read", `document.querySelector(`+strconv.Quote(notificationItem(personalID))+`).dataset.read === 'true'`, browserStepTimeout)
	for _, tab := range []*browserTab{gina, gina2} {
		tab.waitBadge(1)
	}
	gina2.waitFor("the read mark in the second tab's list", `document.querySelector(`+strconv.Quote(notificationItem(personalID))+`).dataset.read === 'true'`, browserStepTimeout)

	// 4. Mark all read in the second tab: both badges go.
	gina2.do("mark all read", chromedp.Click(chromedp.CSS("#notif-read-all")))
	for _, tab := range []*browserTab{gina, gina2} {
		tab.waitBadge(0)
	}
	assert.Equal(t, 0, srv.unreadCount(t, gina.token()), "Gina's unread count on the server")

	// 5. The admin signs in with a token: the admin panel records a KPI the
	// guest sees as a new card, and sends a notification she gets live.
	ops := adminPanelReachesGuest(t, browser, srv.URL, admin, gina)

	for _, tab := range []*browserTab{gina, gina2, ops} {
		tab.checkConsole()
	}
	gina.screenshotWhenStill()
}

// TestBrowserDashboardNeedsSignIn: with KPI_PUBLIC=false (production's
// default) an anonymous page shows "Sign in to see the dashboard" and no
// KPI, without asking again and again; signing in shows the KPIs, live;
// signing out hides them again.
func TestBrowserDashboardNeedsSignIn(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, map[string]string{"KPI_PUBLIC": "false", "DEMO_FEED": "false", "DASHBOARD_INTERVAL": "200ms"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	srv.recordKPI(t, admin, map[string]any{"module": "finance", "key": "latency", "value": 120, "label": "Latency", "unit": "ms"})

	browser := startBrowser(t, chromium)
	tab := openTab(t, browser, "A", srv.URL)
	tab.logDashboardOnFailure()
	const lockedOut = `document.getElementById('dashboard-signin').checkVisibility() && document.querySelectorAll('.kpi-card').length === 0` +
		` && document.getElementById('dashboard-loading').hidden && document.getElementById('dashboard-error').hidden`
	tab.waitFor("the dashboard to ask for a sign-in", lockedOut, browserStepTimeout)
	refused := srv.metric(t, `switchboard_errors_total{code="UNAUTHENTICATED"}`)
	assert.Positive(t, refused, "the server refused the anonymous page's dashboard")

	tab.signIn("Ann")
	tab.waitKPI("finance", "latency", "Latency", "120 ms")
	assert.False(t, tab.visible("#dashboard-signin"))
	srv.recordKPI(t, admin, map[string]any{"module": "finance", "key": "latency", "value": 135})
	tab.waitKPI("finance", "latency", "Latency", "135 ms")
	tab.waitFor("the sparkline to have both values", kpiRow("finance", "latency")+`?.querySelector('svg.spark').dataset.points === '2'`, browserStepTimeout)
	assert.Equal(t, refused, srv.metric(t, `switchboard_errors_total{code="UNAUTHENTICATED"}`),
		"the anonymous page gave up at the first refusal: it did not ask again while Ann signed in")

	tab.do("sign out", chromedp.Click(chromedp.CSS("#signout")))
	tab.waitFor("the dashboard to ask for a sign-in again", lockedOut, browserStepTimeout)
	tab.checkConsole()
}

// adminPanelReachesGuest is TestBrowserDashboardAndNotifications' fifth
// step: the admin signs in with adminToken in a new tab of the page at url;
// its admin panel records a KPI that guest, whose bell's list is open and
// empty of unread notifications, sees as a new card; it shows the server's
// error for a notification with a bad link, then sends one that guest
// receives live on top of her list. It returns the admin's tab.
func adminPanelReachesGuest(t *testing.T, browser context.Context, url, adminToken string, guest *browserTab) *browserTab {
	t.Helper()
	ops := openTab(t, browser, "O", url)
	ops.logDashboardOnFailure()
	ops.signInWithToken(adminToken, "ops")
	ops.waitFor("the admin panel", `!document.getElementById('admin-panel').hidden && !document.getElementById('notify-form').hidden`, browserStepTimeout)
	ops.fill(map[string]string{"#kpi-module": "rehab", "#kpi-key": "sessions", "#kpi-value": "42", "#kpi-label": "Sessions"})
	ops.do("record the KPI", chromedp.Click(chromedp.CSS("#kpi-record")))
	ops.waitFor("the recorded message", `!document.getElementById('kpi-result').hidden`, browserStepTimeout)
	guest.waitKPI("rehab", "sessions", "Sessions", "42")

	ops.fill(map[string]string{"#notify-title": "Release 2.0 is out", "#notify-link": "ftp://example.com"})
	ops.do("send with a bad link", chromedp.Click(chromedp.CSS("#notify-send")))
	ops.waitFor("the server's error", `!document.getElementById('notify-error').hidden`, browserStepTimeout)
	assert.True(t, strings.HasPrefix(evalIn[string](ops, `document.getElementById('notify-error').textContent`), "BAD_USER_INPUT: "),
		"error shown: %q", evalIn[string](ops, `document.getElementById('notify-error').textContent`))
	ops.fill(map[string]string{"#notify-link": ""})
	ops.do("send", chromedp.Click(chromedp.CSS("#notify-send")))
	ops.waitFor("the sent message", `!document.getElementById('notify-result').hidden && document.getElementById('notify-error').hidden`, browserStepTimeout)
	guest.waitBadge(1)
	guest.waitFor("the new notification on top of the open list", `document.querySelector('#notif-list > li .notif-title')?.textContent === 'Release 2.0 is out'`, browserStepTimeout)
	return ops
}

// kpiRow is an expression for the dashboard row of a KPI (null while there
// is none).
func kpiRow(module, key string) string {
	return `document.querySelector('.kpi-card[data-module=` + strconv.Quote(module) + `] .kpi[data-key=` + strconv.Quote(key) + `]')`
}

// notificationItem is the CSS selector of a notification in the bell's list.
func notificationItem(id string) string {
	return `#notif-list > li[data-id="` + id + `"]`
}

// waitKPI waits until the dashboard shows a KPI with this label and value
// (with its unit).
func (b *browserTab) waitKPI(module, key, label, value string) {
	b.t.Helper()
	row := kpiRow(module, key)
	b.waitFor(module+"/"+key+" to read "+strconv.Quote(label+" "+value),
		row+`?.querySelector('.kpi-label').textContent === `+strconv.Quote(label)+
			` && `+row+`.querySelector('.kpi-value').textContent === `+strconv.Quote(value), browserStepTimeout)
}

// kpiField returns the text of a part of a KPI's row (a CSS selector).
func (b *browserTab) kpiField(module, key, selector string) string {
	b.t.Helper()
	return evalIn[string](b, kpiRow(module, key)+`.querySelector(`+strconv.Quote(selector)+`).textContent`)
}

// kpiCardUpdated returns a card's "updated" time as shown.
func (b *browserTab) kpiCardUpdated(module string) string {
	b.t.Helper()
	return evalIn[string](b, `document.querySelector('.kpi-card[data-module=`+strconv.Quote(module)+`] .kpi-updated').textContent`)
}

// visible reports whether the element matching selector is shown.
func (b *browserTab) visible(selector string) bool {
	b.t.Helper()
	return evalIn[bool](b, `(() => { const e = document.querySelector(`+strconv.Quote(selector)+`); return e !== null && e.checkVisibility(); })()`)
}

// waitBadge waits until the bell's badge shows n, or is hidden for 0.
func (b *browserTab) waitBadge(n int) {
	b.t.Helper()
	s := strconv.Quote(strconv.Itoa(n))
	expr := `document.getElementById('bell').dataset.unread === ` + s + ` && document.getElementById('bell-badge').hidden`
	if n > 0 {
		expr = `document.getElementById('bell').dataset.unread === ` + s + ` && !document.getElementById('bell-badge').hidden` +
			` && document.getElementById('bell-badge').textContent === ` + s
	}
	b.waitFor("the bell's badge to show "+strconv.Itoa(n), `!document.getElementById('bell').hidden && `+expr, browserStepTimeout)
}

// openBell opens the notification list.
func (b *browserTab) openBell() {
	b.t.Helper()
	b.do("open the notifications", chromedp.Click(chromedp.CSS("#bell")))
	b.waitFor("the notification list to open", `!document.getElementById('notif-panel').hidden`, browserStepTimeout)
}

// notificationTitles returns the titles in the bell's list, top to bottom.
func (b *browserTab) notificationTitles() []string {
	b.t.Helper()
	return evalIn[[]string](b, `[...document.querySelectorAll('#notif-list > li .notif-title')].map((e) => e.textContent)`)
}

// signInWithToken signs in through the token form and waits for the page
// to show name signed in and to reconnect.
func (b *browserTab) signInWithToken(token, name string) {
	b.t.Helper()
	b.do("sign in with a token",
		chromedp.Click(chromedp.CSS("#token-signin summary")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#token-submit")),
	)
	b.waitFor("the page to show "+name+" signed in, and to reconnect",
		`document.getElementById('me-name').textContent === `+strconv.Quote(name)+` && `+connStateIs("connected"),
		browserStepTimeout)
}

// fill sets form fields' values (by CSS selector).
func (b *browserTab) fill(values map[string]string) {
	b.t.Helper()
	v, err := json.Marshal(values)
	require.NoError(b.t, err)
	b.do("fill the form", chromedp.Evaluate[chromedp.Void](
		`for (const [sel, v] of Object.entries(`+string(v)+`)) document.querySelector(sel).value = v`))
}

// logDashboardOnFailure logs the dashboard, the bell and the admin panel
// when the test fails.
func (b *browserTab) logDashboardOnFailure() {
	b.logOnFailure("dashboard", `({
		cards: [...document.querySelectorAll('.kpi-card')].map((c) => c.textContent),
		movers: document.getElementById('top-movers').textContent,
		bell: {...document.getElementById('bell').dataset, hidden: document.getElementById('bell').hidden},
		notifications: [...document.querySelectorAll('#notif-list > li')].map((li) => li.dataset.id + ' ' + li.dataset.read + ' ' + li.textContent),
		errors: ['dashboard-error', 'notif-error', 'token-error', 'notify-error', 'kpi-error']
			.map((id) => document.getElementById(id))
			.filter((e) => !e.hidden).map((e) => e.id + ': ' + e.textContent),
	})`)
}

// logOnFailure logs what the JavaScript expression state evaluates to (as
// JSON) when the test fails.
func (b *browserTab) logOnFailure(what, state string) {
	b.t.Cleanup(func() {
		if !b.t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(`+state+`, null, 1)`))
		if err != nil {
			s = "unavailable: " + err.Error()
		}
		b.t.Logf("tab %s: %s state: %s", b.name, what, s)
	})
}
