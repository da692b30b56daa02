package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// Bounds of the browser test's waits.
const (
	browserStartTimeout = 30 * time.Second // launching Chromium
	browserStepTimeout  = 15 * time.Second // one page action or UI change
	browserTotalTimeout = 2 * time.Minute  // the whole browser session
	// reconnectTimeout bounds the page's way back after the outage: its
	// backoff may have grown to several seconds while the server was down.
	reconnectTimeout = 25 * time.Second
)

// findChromium returns the path of the Chromium binary, or skips the test
// (fails it under REQUIRE_SERVICES=1) when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	testenv.RequireService(t, "the browser test needs chromium or chromium-browser on PATH (Debian: apt-get install chromium)")
	return ""
}

// startBrowser launches headless Chromium with a fresh profile (and the
// extra options) and returns a chromedp context for it. The browser is
// closed when the test ends.
func startBrowser(t *testing.T, chromium string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	profile := t.TempDir() // removed after the browser has exited (cleanups run last-in first-out)
	output := &testenv.Buffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(output),
	)
	opts = append(opts, extra...)
	// The first Run binds the browser's life to its context, so the whole
	// session gets one overall bound and each step a shorter one below it.
	session, cancelSession := context.WithTimeout(context.Background(), browserTotalTimeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(session, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		_ = chromedp.Cancel(browser) // closes Chromium gracefully
		cancelBrowser()
		cancelAlloc() // waits for the process to exit
		cancelSession()
		if t.Failed() {
			t.Logf("chromium output:\n%s", output.String())
		}
	})

	if err := attachChromedp(browser, browserStartTimeout); err != nil {
		t.Fatalf("start chromium %s: %v\n%s", chromium, err, output.String())
	}
	return browser
}

// attachChromedp runs the first (empty) action on a chromedp context, which
// starts its browser or opens its tab. That first run ties the browser's or
// tab's life to the context it is given, so it gets ctx itself, not a context
// with a shorter deadline; timeout bounds only the wait.
func attachChromedp(ctx context.Context, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("not ready within %v", timeout)
	}
}

// browserTab is one Switchboard page in its own browser context, so that its
// localStorage (and so its session) is its own.
type browserTab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// openTab opens the page at url in a new browser context, records its
// console, and waits until it is connected and has loaded the feed.
func openTab(t *testing.T, browser context.Context, name, url string) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	tab := &browserTab{t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			tab.logConsole()
		}
		cancel()
	})
	// Console needs the tab to exist.
	if err := attachChromedp(ctx, browserStepTimeout); err != nil {
		t.Fatalf("tab %s: open: %v", name, err)
	}

	tab.recordConsole()
	tab.do("load the page", chromedp.Navigate(url))
	tab.waitFor("the page to connect and load the feed",
		connStateIs("connected")+` && document.getElementById('statuses-loading').hidden`, browserStepTimeout)
	return tab
}

// recordConsole records what the tab writes to its console, for
// checkConsole and logConsole. The tab must exist.
func (b *browserTab) recordConsole() {
	messages := chromedp.Console(b.ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the tab is closed
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
}

// do runs actions in the tab within browserStepTimeout, failing the test
// with the page's state when they do not succeed.
func (b *browserTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("tab %s: %s: %v\n%s", b.name, what, err, b.describe())
	}
}

// waitFor waits until the JavaScript expression is truthy in the page.
func (b *browserTab) waitFor(what, expr string, timeout time.Duration, opts ...chromedp.PollOption) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	// Interval polling, not requestAnimationFrame: a page that is not in the
	// foreground may get no animation frames.
	opts = append([]chromedp.PollOption{
		chromedp.WithPollingInterval(25 * time.Millisecond),
		chromedp.WithPollingTimeout(timeout),
	}, opts...)
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, opts...)); err != nil {
		b.t.Fatalf("tab %s: waiting %v for %s: %v\n%s", b.name, timeout, what, err, b.describe())
	}
}

// waitForText waits until a status with exactly this text is shown.
func (b *browserTab) waitForText(text string, timeout time.Duration) {
	b.t.Helper()
	b.waitFor("a status reading "+strconv.Quote(text), statusTextCountJS+" >= 1", timeout, chromedp.WithPollingArgs(text))
}

// statusTextCountJS counts the statuses whose text is args[0].
const statusTextCountJS = `[...document.querySelectorAll('#statuses > li.status .text')].filter((p) => p.textContent === args[0]).length`

// connStateIs is an expression true when the connection indicator is in state.
func connStateIs(state string) string {
	return `document.getElementById('conn').dataset.state === ` + strconv.Quote(state)
}

// evalIn evaluates a JavaScript expression in the tab and decodes its value.
func evalIn[T any](b *browserTab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("tab %s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// signIn signs in through the form and waits for the reconnection that
// follows with the new token.
func (b *browserTab) signIn(name string) {
	b.t.Helper()
	b.do("sign in as "+name,
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.Click(chromedp.CSS("#signin")),
	)
	// Sign-in shows the name and restarts the socket in the same task, so
	// once the name is shown the state is no longer the anonymous socket's.
	b.waitFor("the page to show "+name+" signed in, and to reconnect",
		`document.getElementById('me-name').textContent === `+strconv.Quote(name)+
			` && !document.getElementById('status-text').disabled && `+connStateIs("connected"),
		browserStepTimeout)
}

// post types text into the compose box and posts it, with the Post button
// or the Enter key.
func (b *browserTab) post(text string, enter bool) {
	b.t.Helper()
	b.do("type a status",
		chromedp.WaitEnabled(chromedp.CSS("#status-text")),
		chromedp.SendKeys(chromedp.CSS("#status-text"), text),
	)
	require.Equal(b.t, text, b.value("#status-text"), "tab %s: compose box after typing", b.name)
	if enter {
		b.do("press Enter", chromedp.KeyEvent("\r"))
	} else {
		b.do("click Post", chromedp.Click(chromedp.CSS("#post")))
	}
	b.waitFor("the compose box to clear after posting",
		`document.getElementById('status-text').value === '' && document.getElementById('post-error').hidden`,
		browserStepTimeout)
}

// feedItem is one status as the page shows it.
type feedItem struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	Text   string `json:"text"`
}

// feed returns the statuses shown, top to bottom, and checks no id appears
// twice.
func (b *browserTab) feed() []feedItem {
	b.t.Helper()
	items := evalIn[[]feedItem](b, `[...document.querySelectorAll('#statuses > li')].map((li) => ({
		id: li.dataset.id ?? '',
		author: li.querySelector('.author')?.textContent ?? '',
		text: li.querySelector('.text')?.textContent ?? '',
	}))`)
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		assert.False(b.t, seen[it.ID], "tab %s shows status %s twice", b.name, it.ID)
		seen[it.ID] = true
	}
	return items
}

// count returns how many elements match a CSS selector.
func (b *browserTab) count(selector string) int {
	b.t.Helper()
	return evalIn[int](b, `document.querySelectorAll(`+strconv.Quote(selector)+`).length`)
}

// textCount returns how many statuses read exactly text.
func (b *browserTab) textCount(text string) int {
	b.t.Helper()
	return evalIn[int](b, strings.Replace(statusTextCountJS, "args[0]", strconv.Quote(text), 1))
}

// connState returns the connection indicator's state.
func (b *browserTab) connState() string {
	b.t.Helper()
	return evalIn[string](b, `document.getElementById('conn').dataset.state`)
}

// value returns the value of a form field.
func (b *browserTab) value(selector string) string {
	b.t.Helper()
	return evalIn[string](b, `document.querySelector(`+strconv.Quote(selector)+`).value`)
}

// describe summarises the page for a failure message; it never fails.
func (b *browserTab) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		conn: document.getElementById('conn')?.dataset.state,
		connText: document.getElementById('conn-text')?.textContent,
		me: document.getElementById('me-name')?.textContent,
		errors: ['signin-error', 'post-error', 'feed-error']
			.map((id) => document.getElementById(id))
			.filter((e) => e && !e.hidden).map((e) => e.id + ': ' + e.textContent),
		statuses: [...document.querySelectorAll('#statuses > li')]
			.map((li) => li.dataset.id + ' ' + li.textContent.trim().replace(/\s+/g, ' ')),
	}, null, 1)`))
	if err != nil {
		return "page state unavailable: " + err.Error()
	}
	return "page state: " + s
}

// checkConsole fails the test on uncaught exceptions and on errors the
// page's own code logged. The browser's own entries (such as the refused
// WebSocket connections during the outage) are expected.
func (b *browserTab) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.IsException() || (m.Source == "" && m.Type == chromedp.ConsoleError) {
			b.t.Errorf("tab %s: console %s (%s:%d)", b.name, m, m.URL, m.Line+1)
		}
	}
}

// logConsole logs everything the tab wrote to its console.
func (b *browserTab) logConsole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		b.t.Logf("tab %s console: %s", b.name, m)
	}
}

// screenshotWhenStill waits until the page's animations (such as arrival
// highlights) have finished, then takes its screenshot.
func (b *browserTab) screenshotWhenStill() {
	b.t.Helper()
	b.waitFor("the page's animations to finish",
		`document.getAnimations().every((a) => a.playState !== 'running' || !isFinite(a.effect.getComputedTiming().endTime))`,
		browserStepTimeout)
	b.screenshot()
}

// screenshot saves a full-page PNG of the tab under the test's temporary
// directory, and also to $SWITCHBOARD_SCREENSHOT when that is set.
func (b *browserTab) screenshot() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err, "tab %s: screenshot", b.name)
	paths := []string{filepath.Join(b.t.TempDir(), "tab-"+b.name+".png")}
	if p := os.Getenv("SWITCHBOARD_SCREENSHOT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		require.NoError(b.t, os.WriteFile(p, png, 0o644))
		b.t.Logf("tab %s: screenshot saved to %s", b.name, p)
	}
}

// restartWhileOffline takes srv away and brings it back while tabs watch:
// it stops srv and waits until every tab shows it is reconnecting; runs
// whileDown with a second server on the same database, at another address
// so that the tabs cannot reach it, and stops that one; then starts the
// server again with srv's settings, so on its address, and waits until
// every tab has reconnected by itself. It returns the restarted server,
// whose log (as the side server's) is shown when the test fails.
func restartWhileOffline(t *testing.T, srv *testServer, tabs []*browserTab, whileDown func(side *testServer)) *testServer {
	t.Helper()
	srv.stop()
	for _, tab := range tabs {
		tab.waitFor("the page to notice the outage", connStateIs("reconnecting"), browserStepTimeout)
	}
	side := startServer(t, map[string]string{"DATA_DIR": srv.env["DATA_DIR"]})
	side.logsOnFailure(t)
	require.NotEqual(t, srv.URL, side.URL, "the side server must not be reachable by the pages")
	whileDown(side)
	side.stop()

	restarted := time.Now()
	srv = startServer(t, srv.env)
	srv.logsOnFailure(t)
	for _, tab := range tabs {
		tab.waitFor("the page to reconnect", connStateIs("connected"), reconnectTimeout)
	}
	t.Logf("every page reconnected %v after the restart", time.Since(restarted).Round(time.Millisecond))
	return srv
}

// token returns the bearer token of the page's session.
func (b *browserTab) token() string {
	b.t.Helper()
	return evalIn[string](b, `JSON.parse(localStorage.getItem('switchboard.session')).token`)
}
