package e2e

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestBrowserRetriesWritesWithTheirKey: the page sends each of its four
// writes (a status, a chat message, a KPI and a notification from the
// admin panel) with an Idempotency-Key header. Chromium drops the answer
// to the first attempt of each once the server has done the write (a lost
// answer, as a dropped connection or a proxy's timeout would make it);
// the page sends the write again by itself with the same key, shows no
// error, and the server has stored each write once. The next status gets
// a new key.
func TestBrowserRetriesWritesWithTheirKey(t *testing.T) {
	chromium := findChromium(t)
	srv := startServer(t, map[string]string{"DEMO_FEED": "false"})
	srv.logsOnFailure(t)
	admin := srv.mintToken(t, "ops", time.Hour, models.RoleAdmin)
	browser := startBrowser(t, chromium)
	ops := openTab(t, browser, "O", srv.URL)
	lost := loseFirstAnswers(t, ops)
	ops.signInWithToken(admin, "ops")

	ops.post("posted once", false)
	general := ops.openRoom("general")
	ops.typeMessage("sent once")
	ops.sendMessage()
	ops.waitFor("the admin panel", `!document.getElementById('admin-panel').hidden && !document.getElementById('notify-form').hidden`, browserStepTimeout)
	ops.fill(map[string]string{"#kpi-module": "rehab", "#kpi-key": "sessions", "#kpi-value": "42"})
	ops.do("record the KPI", chromedp.Click(chromedp.CSS("#kpi-record")))
	ops.waitFor("the recorded message", `!document.getElementById('kpi-result').hidden && document.getElementById('kpi-error').hidden`, browserStepTimeout)
	ops.fill(map[string]string{"#notify-title": "Sent once"})
	ops.do("send the notification", chromedp.Click(chromedp.CSS("#notify-send")))
	ops.waitFor("the sent message", `!document.getElementById('notify-result').hidden && document.getElementById('notify-error').hidden`, browserStepTimeout)
	ops.post("posted next", false)

	keys := lost.keys()
	hexKey := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, op := range []string{models.OpPostStatus, models.OpPostMessage, models.OpRecordKPIs, models.OpSendNotification} {
		sent := keys[op]
		require.GreaterOrEqual(t, len(sent), 2, "%s: the lost attempt and its retry", op)
		assert.Regexp(t, hexKey, sent[0], "%s: a fresh random key", op)
		assert.Equal(t, sent[0], sent[1], "%s: the retry carries the first attempt's key", op)
	}
	assert.Len(t, keys[models.OpPostStatus], 3)
	assert.NotEqual(t, keys[models.OpPostStatus][0], keys[models.OpPostStatus][2], "the next status has a key of its own")

	assert.Equal(t, []string{"posted next", "posted once"}, srv.statusTexts(t), "each status stored once")
	var said []string
	for _, m := range srv.history(t, ops.token(), general) {
		said = append(said, m.Text)
	}
	assert.Equal(t, 1, count(said, "sent once"), "the message stored once: %q", said)
	var samples struct{ KpiHistory []struct{ Value float64 } }
	srv.mustDo(t, admin, `{ kpiHistory(module: "rehab", key: "sessions") { value } }`, nil, &samples)
	assert.Len(t, samples.KpiHistory, 1, "the KPI recorded once")
	var inbox struct {
		Notifications struct {
			Edges []struct{ Node struct{ Title string } }
		}
	}
	srv.mustDo(t, admin, `{ notifications(first: 10) { edges { node { title } } } }`, nil, &inbox)
	assert.Len(t, inbox.Notifications.Edges, 1, "the notification sent once")
	ops.checkConsole()
}

// count is how many of list are v.
func count(list []string, v string) int {
	n := 0
	for _, s := range list {
		if s == v {
			n++
		}
	}
	return n
}

// answerLoser drops the answer to the first attempt of each keyed write a
// tab sends (after the server has done the write), and records the
// Idempotency-Key of every attempt, by operation.
type answerLoser struct {
	mu   sync.Mutex
	sent map[string][]string
}

// keyedWrite finds the operation of a keyed write in a request's document.
var keyedWrite = regexp.MustCompile(`\b(postStatus|postMessage|sendNotification|recordKPIs)\s*\(`)

// loseFirstAnswers pauses the tab's requests to /graphql once their
// answer has come, until the tab closes.
func loseFirstAnswers(t *testing.T, tab *browserTab) *answerLoser {
	t.Helper()
	l := &answerLoser{sent: map[string][]string{}}
	paused := chromedp.Events(tab.ctx, fetch.RequestPaused)
	_, err := chromedp.Call(tab.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "*/graphql", RequestStage: fetch.RequestStageResponse},
	}})
	require.NoError(t, err, "intercept the tab's requests")
	go func() {
		for ev, err := range paused {
			if err != nil {
				return // the tab is closed
			}
			if l.lose(&ev) {
				_, err = chromedp.Call(tab.ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonConnectionReset})
			} else {
				_, err = chromedp.Call(tab.ctx, fetch.ContinueResponse, fetch.ContinueResponseParams{RequestID: ev.RequestID})
			}
			if err != nil && tab.ctx.Err() == nil {
				t.Errorf("tab %s: answer request %s: %v", tab.name, ev.Request.URL, err)
			}
		}
	}()
	return l
}

// lose records the request of ev and says whether to drop its answer: the
// first one of each keyed write.
func (l *answerLoser) lose(ev *fetch.EventRequestPaused) bool {
	var body []byte
	for _, e := range ev.Request.PostDataEntries {
		body = append(body, e.Bytes...)
	}
	var req struct{ Query string }
	if json.Unmarshal(body, &req) != nil {
		return false
	}
	m := keyedWrite.FindStringSubmatch(req.Query)
	if m == nil {
		return false
	}
	key := ""
	for name, v := range ev.Request.Headers {
		if strings.EqualFold(name, "Idempotency-Key") {
			key, _ = v.(string)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[m[1]] = append(l.sent[m[1]], key)
	return len(l.sent[m[1]]) == 1
}

// keys returns the keys sent so far, by operation, in order.
func (l *answerLoser) keys() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]string, len(l.sent))
	for op, keys := range l.sent {
		out[op] = slices.Clone(keys)
	}
	return out
}
