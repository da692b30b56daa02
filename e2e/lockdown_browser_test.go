package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserPageConnectsWithinItsPolicy: under its Content-Security-Policy
// the page still connects its WebSocket, opened by the server's address and
// by a host name (the policy follows the host the request names), and
// receives a status posted meanwhile; a WebSocket to another origin is
// refused by the policy, and one to an allowed origin is not.
func TestBrowserPageConnectsWithinItsPolicy(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, map[string]string{"ALLOWED_ORIGINS": "http://127.0.0.2:9"})
	srv.logsOnFailure(t)
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	t.Logf("Content-Security-Policy: %s", resp.Header.Get("Content-Security-Policy"))

	browser := startBrowser(t, chromium)
	token := srv.signIn(t, "poster")
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		tab := openTab(t, browser, url, url+"/") // waits until the WebSocket is connected
		text := "posted for " + url
		srv.post(t, token, text)
		tab.waitForText(text, browserStepTimeout)

		assert.Equal(t, "refused by connect-src", tab.openWebSocket("ws://127.0.0.3:9/"), "another origin")
		assert.Equal(t, "attempted", tab.openWebSocket("ws://127.0.0.2:9/"), "an allowed origin")
		tab.checkConsole()
	}
}

// openWebSocket opens a WebSocket to url in the page and says whether the
// page's policy refused it ("refused by" the directive) or the browser
// attempted it ("attempted": it fails, or opens).
func (b *browserTab) openWebSocket(url string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise((resolve) => {
		document.addEventListener('securitypolicyviolation', (e) => resolve('refused by ' + e.effectiveDirective), { once: true });
		try {
			const ws = new WebSocket(`+strconv.Quote(url)+`);
			const attempted = () => setTimeout(() => resolve('attempted'), 200); // a violation is reported first
			ws.onerror = attempted;
			ws.onopen = attempted;
		} catch (err) {
			resolve('refused by ' + err.name);
		}
	})`, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err)
	return v
}
