package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestPlaygroundWorksOffline: the playground served at /playground works in
// a browser that can reach no host but the server, on a server that does
// not answer introspection. It loads (every request it makes goes to the
// server), shows the schema's docs (from /schema.graphql), runs a query,
// signs in as a guest from its sign-in panel, runs a mutation with the
// token that puts in the Headers tab, and receives a subscription event
// over graphql-transport-ws, whose connection_init carries the same token
// (the subscription needs one). A screenshot is kept as a test artifact.
func TestPlaygroundWorksOffline(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, map[string]string{"INTROSPECTION": "false", "PLAYGROUND": "true"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)

	// Every host name resolves to nothing but the server's own address.
	browser := startBrowser(t, chromium, chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
	tab := openPlayground(t, browser, srv.URL+"/playground")

	// The schema came from the SDL: the docs list the query fields.
	tab.do("open the docs", chromedp.Click(chromedp.CSS(`button[aria-label="Show Documentation Explorer"]`)))
	tab.waitFor("the docs to list the query type", `document.querySelector('.graphiql-doc-explorer')?.textContent.includes('Query')`, browserStepTimeout)
	tab.clickText("open the query type", "a.graphiql-doc-explorer-type-name", "Query")
	tab.waitFor("the docs to show statuses", `document.querySelector('.graphiql-doc-explorer')?.textContent.includes('statuses')`, browserStepTimeout)

	// The default query runs as it is.
	feed := tab.run("the default query", "")
	assert.Contains(t, feed, `"statuses"`)
	assert.NotContains(t, feed, `"errors"`)

	// Sign in as a guest from the panel: the token lands in the Headers tab.
	tab.do("open the sign-in panel", chromedp.Click(chromedp.CSS(`button[aria-label="Show Sign in"]`)))
	tab.do("type a guest name",
		chromedp.WaitVisible(chromedp.CSS(`#signin-name`)),
		chromedp.SendKeys(chromedp.CSS(`#signin-name`), "Ada"),
	)
	tab.clickText("sign in as a guest", "button", "Sign in as guest")
	tab.waitFor("the panel to say who signed in", `document.querySelector('.signin-state')?.textContent.includes('Signed in as guest Ada')`, browserStepTimeout)
	headers := evalIn[string](tab.browserTab, editorValue("headers"))
	var sent map[string]string
	require.NoError(t, json.Unmarshal([]byte(headers), &sent), "the Headers tab after sign-in: %s", headers)
	token, ok := strings.CutPrefix(sent["Authorization"], "Bearer ")
	require.True(t, ok, "the Headers tab after sign-in: %s", headers)
	var me struct{ Me struct{ ID, Name string } }
	srv.mustDo(t, token, `query { me { id name } }`, nil, &me)
	require.Equal(t, "Ada", me.Me.Name, "the token in the Headers tab is Ada's")

	// A mutation with that token.
	posted := tab.run("a mutation", `mutation Post { postStatus(text: "posted from the playground") { id text author { name } } }`)
	assert.Contains(t, posted, `"posted from the playground"`)
	assert.Contains(t, posted, `"Ada"`)
	assert.NotContains(t, posted, `"errors"`)

	// A subscription that needs the token: it receives a notification sent
	// to Ada while it runs.
	tab.setQuery(`subscription Notifications { notificationAdded { title } }`)
	tab.do("start the subscription", chromedp.Click(chromedp.CSS(`.graphiql-execute-button`)))
	// The subscription is registered once the server counts it.
	waitUntil(t, browserStepTimeout, func() bool {
		return srv.metric(t, `switchboard_subscriptions{field="notificationAdded"}`) >= 1
	}, "the playground's subscription to reach the server")
	srv.sendNotification(t, admin, map[string]any{"userId": me.Me.ID, "title": "hello, playground"})
	tab.waitFor("the notification to show in the response pane", editorValue("response")+`.includes('hello, playground')`, browserStepTimeout)
	assert.NotContains(t, evalIn[string](tab.browserTab, editorValue("response")), `"errors"`)

	tab.saveArtifact("playground.png")
	tab.checkConsole()
	tab.checkRequests(srv.URL)
}

// playgroundTab is a browserTab on the playground, which also records
// every request the page makes.
type playgroundTab struct {
	*browserTab
	mu       sync.Mutex
	requests []string
}

// openPlayground opens the playground at pageURL in a new browser context
// and waits until GraphiQL shows its editors.
func openPlayground(t *testing.T, browser context.Context, pageURL string) *playgroundTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	tab := &playgroundTab{browserTab: &browserTab{t: t, name: "playground", ctx: ctx}}
	t.Cleanup(func() {
		if t.Failed() {
			tab.logConsole()
		}
		cancel()
	})
	require.NoError(t, attachChromedp(ctx, browserStepTimeout), "open a tab")
	tab.recordConsole()
	// Requests, and WebSockets (which are no requests to the network domain).
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	sockets := chromedp.Events(ctx, network.WebSocketCreated)
	record := func(url string) {
		tab.mu.Lock()
		tab.requests = append(tab.requests, url)
		tab.mu.Unlock()
	}
	go func() {
		for e, err := range requests {
			if err != nil {
				return // the tab is closed
			}
			record(e.Request.URL)
		}
	}()
	go func() {
		for e, err := range sockets {
			if err != nil {
				return
			}
			record(e.URL)
		}
	}()
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err, "record the playground's requests")
	tab.do("load the playground", chromedp.Navigate(pageURL))
	tab.waitFor("GraphiQL to show its editors", `!!document.querySelector('.graphiql-query-editor .CodeMirror')`, browserStepTimeout)
	return tab
}

// editorValue is an expression for the text of one of GraphiQL's editors:
// "query", "variables", "headers" or "response". (The variables and the
// headers editors are both in the editor tools, in that order.)
func editorValue(editor string) string {
	selector, index := map[string]string{
		"query":     ".graphiql-query-editor .CodeMirror",
		"variables": ".graphiql-editor-tool .CodeMirror",
		"headers":   ".graphiql-editor-tool .CodeMirror",
		"response":  ".graphiql-response .CodeMirror",
	}[editor], "0"
	if editor == "headers" {
		index = "1"
	}
	return `(document.querySelectorAll(` + strconv.Quote(selector) + `)[` + index + `]?.CodeMirror.getValue() ?? '')`
}

// clickText clicks the first element matching selector whose text is text.
func (p *playgroundTab) clickText(what, selector, text string) {
	p.t.Helper()
	found := evalIn[bool](p.browserTab, `(() => {
		const el = [...document.querySelectorAll(`+strconv.Quote(selector)+`)].find((e) => e.textContent.trim() === `+strconv.Quote(text)+`);
		el?.click();
		return !!el;
	})()`)
	require.True(p.t, found, "%s: no %s reading %q", what, selector, text)
}

// setQuery replaces the text of the query editor with a document of one
// named operation, and waits until GraphiQL has read the operation's name
// (it does so a moment after every edit).
func (p *playgroundTab) setQuery(query string) {
	p.t.Helper()
	_, rest, _ := strings.Cut(query, " ")
	name, _, _ := strings.Cut(rest, " ")
	evalIn[bool](p.browserTab, `document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(`+strconv.Quote(query)+`), true`)
	p.waitFor("GraphiQL to read the operation "+name,
		`document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.operationName === `+strconv.Quote(name), browserStepTimeout)
}

// run puts query in the editor (unless it is empty: the editor's text runs
// as it is), runs it, and returns the response pane's text once it shows a
// result.
func (p *playgroundTab) run(what, query string) string {
	p.t.Helper()
	if query != "" {
		p.setQuery(query)
	}
	evalIn[bool](p.browserTab, `document.querySelector('.graphiql-response .CodeMirror').CodeMirror.setValue(''), true`)
	p.do("run "+what, chromedp.Click(chromedp.CSS(`.graphiql-execute-button`)))
	p.waitFor("the result of "+what, editorValue("response")+`.trim().startsWith('{')`, browserStepTimeout)
	return evalIn[string](p.browserTab, editorValue("response"))
}

// checkRequests fails the test for every request the page made to anything
// but base (the server's own origin).
func (p *playgroundTab) checkRequests(base string) {
	p.t.Helper()
	own, err := url.Parse(base)
	require.NoError(p.t, err)
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(p.t, p.requests, "no request recorded")
	for _, r := range p.requests {
		u, err := url.Parse(r)
		if err == nil && (u.Scheme == "data" || u.Scheme == "blob") {
			continue
		}
		if err != nil || u.Host != own.Host {
			p.t.Errorf("the playground requested %s, outside %s", r, base)
		}
	}
	p.t.Logf("the playground made %d requests, all to %s", len(p.requests), base)
}

// saveArtifact saves a screenshot of the tab as name under
// $TEST_ARTIFACTS_DIR (CI keeps that folder), else under the test's
// temporary directory.
func (b *browserTab) saveArtifact(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err, "tab %s: screenshot", b.name)
	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		dir = b.t.TempDir()
	}
	require.NoError(b.t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(b.t, os.WriteFile(p, png, 0o644))
	b.t.Logf("tab %s: screenshot saved to %s", b.name, p)
}
