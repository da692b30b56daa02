package e2e

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserEventSourceResumes: the browser's own EventSource, pointed at
// /graphql with a subscription in its URL, receives each status as a next
// event whose lastEventId is its position; when the server restarts in the
// middle of the stream, the EventSource reconnects by itself, sends that id
// as Last-Event-ID, and the stream goes on after it: every status once, in
// order. The page's Content-Security-Policy allows it (connect-src 'self').
func TestBrowserEventSourceResumes(t *testing.T) {
	chromium := findChromium(t)
	env := map[string]string{"DATA_DIR": t.TempDir(), "ADDR": freeLoopbackAddr(t), "DEMO_FEED": "false"}
	srv := startServer(t, env)
	srv.logsOnFailure(t)
	token := srv.signIn(t, "Eve")
	posted := []status{srv.post(t, token, "one")}

	browser := startBrowser(t, chromium)
	tab := openTab(t, browser, "eventsource", srv.URL+"/")
	const query = `subscription { statusPosted(after: "0") { id text } }`
	evalIn[bool](tab, `(() => {
		window.sse = { events: [], errors: 0, opens: 0 };
		const es = new EventSource('/graphql?query=' + encodeURIComponent(`+strconv.Quote(query)+`));
		es.addEventListener('next', (e) => window.sse.events.push({ id: e.lastEventId, data: JSON.parse(e.data) }));
		es.addEventListener('complete', () => es.close());
		es.onopen = () => window.sse.opens++;
		es.onerror = () => window.sse.errors++;
		window.sse.source = es;
		return true;
	})()`)
	waitEvents := func(n int) {
		tab.waitFor("the EventSource to have "+strconv.Itoa(n)+" events", `window.sse.events.length >= `+strconv.Itoa(n), reconnectTimeout)
	}
	waitEvents(1)
	posted = append(posted, srv.post(t, token, "two"), srv.post(t, token, "three"))
	waitEvents(3)

	srv.stop()
	tab.waitFor("the EventSource to notice the server is gone", `window.sse.errors >= 1`, browserStepTimeout)
	srv = startServer(t, env)
	srv.logsOnFailure(t)
	posted = append(posted, srv.post(t, token, "four"))
	waitEvents(4)
	posted = append(posted, srv.post(t, token, "five"))
	waitEvents(5)

	type event struct {
		ID   string
		Data struct {
			Data struct{ StatusPosted status }
		}
	}
	var got []event
	raw := evalIn[string](tab, `JSON.stringify(window.sse.events)`)
	require.NoError(t, json.Unmarshal([]byte(raw), &got))
	require.Len(t, got, len(posted), "events: %s", raw)
	for i, e := range got {
		assert.Equal(t, posted[i].ID, e.Data.Data.StatusPosted.ID, "event %d", i)
		assert.Equal(t, posted[i].ID, e.ID, "event %d's lastEventId", i)
	}
	assert.GreaterOrEqual(t, evalIn[int](tab, `window.sse.opens`), 2, "the EventSource reconnected by itself")
	assert.Equal(t, 1, evalIn[int](tab, `window.sse.source.readyState`), "still open")
	tab.checkConsole()
}
