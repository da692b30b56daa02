package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// apolloRequest is one request the page's fetch made (see
// e2e/apolloclient/page.mjs).
type apolloRequest struct {
	Headers  map[string]string `json:"headers"`
	HasQuery bool              `json:"hasQuery"`
	Hashed   bool              `json:"hashed"`
	Status   int               `json:"status"`
	Error    string            `json:"error"`
}

// apolloResult is what the page's run resolves to.
type apolloResult struct {
	Data struct {
		Statuses struct {
			Edges []struct{ Node status }
		}
	} `json:"data"`
	Error string `json:"error"`
}

// TestApolloClientCrossOrigin runs the real Apollo Client in Chromium on a
// page of another origin (another port of 127.0.0.1, serving the page and
// its bundle itself) against a server whose ALLOWED_ORIGINS lists that
// origin. With a client name and version set, Apollo Client sends
// apollographql-client-name and apollographql-client-version, so the
// browser asks the preflight for them: the preflight grants them and the
// query succeeds. Through automatic persisted queries, the unknown hash's
// 404 makes the client send the query once, and the next query goes by
// hash alone. A page on an origin that is not listed gets no CORS grant:
// the browser refuses it the response.
func TestApolloClientCrossOrigin(t *testing.T) {
	bundle := buildApolloPage(t)
	chromium := findChromium(t)
	allowed, other := servePage(t, bundle), servePage(t, bundle)

	s := startServer(t, map[string]string{"ALLOWED_ORIGINS": allowed.URL})
	s.logsOnFailure(t)
	token := s.signIn(t, "Ada")
	posted := s.post(t, token, "hello from another origin")
	browser := startBrowser(t, chromium)
	api := strconv.Quote(s.URL + "/graphql")

	t.Run("allowed origin, client name and version", func(t *testing.T) {
		page := openPlainTab(t, browser, allowed.URL)
		res := evalPage[apolloResult](t, page, `switchboardTest.run(`+api+`, false)`)
		require.Empty(t, res.Error)
		require.Len(t, res.Data.Statuses.Edges, 1)
		assert.Equal(t, posted.Text, res.Data.Statuses.Edges[0].Node.Text)
		reqs := evalPage[[]apolloRequest](t, page, `switchboardTest.requests`)
		require.Len(t, reqs, 1)
		assert.Equal(t, "switchboard-e2e", reqs[0].Headers["apollographql-client-name"])
		assert.Equal(t, "1.2.3", reqs[0].Headers["apollographql-client-version"])
		assert.Equal(t, http.StatusOK, reqs[0].Status)
	})

	t.Run("automatic persisted queries", func(t *testing.T) {
		page := openPlainTab(t, browser, allowed.URL)
		for range 2 {
			res := evalPage[apolloResult](t, page, `switchboardTest.run(`+api+`, true)`)
			require.Empty(t, res.Error)
			require.Len(t, res.Data.Statuses.Edges, 1)
		}
		assert.Equal(t, []apqStep{{false, http.StatusNotFound}, {true, http.StatusOK}, {false, http.StatusOK}}, apqSteps(t, page),
			"hash alone: unknown (404); again with the query; then the hash alone is enough")
	})

	t.Run("origin not allowed", func(t *testing.T) {
		page := openPlainTab(t, browser, other.URL)
		res := evalPage[apolloResult](t, page, `switchboardTest.run(`+api+`, false)`)
		assert.Contains(t, res.Error, "Failed to fetch")
		reqs := evalPage[[]apolloRequest](t, page, `switchboardTest.requests`)
		require.Len(t, reqs, 1)
		assert.Contains(t, reqs[0].Error, "Failed to fetch", "the browser got no CORS grant")
	})
}

// TestApolloPersistedQueriesAcrossReplicas: Apollo Client's persisted-query
// link, in Chromium, against two replicas sharing MariaDB and Redis (as
// behind a load balancer that sends each request anywhere): the document
// registered through replica A is known to replica B, whose first request
// from the client goes by hash alone and succeeds.
func TestApolloPersistedQueriesAcrossReplicas(t *testing.T) {
	bundle := buildApolloPage(t)
	chromium := findChromium(t)
	origin := servePage(t, bundle)

	redis := redistest.Start(t)
	env := map[string]string{"DATABASE_URL": storetest.MySQLURL(t), "REDIS_URL": redis.URL(), "ALLOWED_ORIGINS": origin.URL, "DEMO_FEED": "false"}
	a, b := startServer(t, env), startServer(t, env)
	a.post(t, a.signIn(t, "Ada"), "one status for the feed")
	browser := startBrowser(t, chromium)
	page := openPlainTab(t, browser, origin.URL)
	for _, s := range []*testServer{a, b} {
		res := evalPage[apolloResult](t, page, `switchboardTest.run(`+strconv.Quote(s.URL+"/graphql")+`, true)`)
		require.Empty(t, res.Error)
		require.Len(t, res.Data.Statuses.Edges, 1)
	}
	assert.Equal(t, []apqStep{{false, http.StatusNotFound}, {true, http.StatusOK}, {false, http.StatusOK}}, apqSteps(t, page),
		"A: hash alone unknown (404), again with the query; B: the hash alone is enough")
}

// apqStep is one request of automatic persisted queries: whether it sent
// the document, and the status it got.
type apqStep struct {
	HasQuery bool
	Status   int
}

// apqSteps returns the requests the page has made, each of which must
// carry a persisted-query hash.
func apqSteps(t *testing.T, page context.Context) []apqStep {
	t.Helper()
	var steps []apqStep
	for _, r := range evalPage[[]apolloRequest](t, page, `switchboardTest.requests`) {
		assert.True(t, r.Hashed, "every request carries the hash")
		steps = append(steps, apqStep{r.HasQuery, r.Status})
	}
	return steps
}

// buildApolloPage bundles e2e/apolloclient/page.mjs (Apollo Client
// included) and returns the bundle's path.
func buildApolloPage(t *testing.T) string {
	t.Helper()
	node, dir := requireNodePackages(t, "apolloclient", "@apollo/client", "esbuild")
	bundle := filepath.Join(t.TempDir(), "bundle.js")
	out, err := exec.Command(node, filepath.Join(dir, "build.mjs"), bundle).CombinedOutput()
	require.NoError(t, err, "bundle the page: %s", out)
	return bundle
}

// servePage serves a page that loads bundle, on a loopback port of its
// own: an origin of its own. It stops when the test ends.
func servePage(t *testing.T, bundle string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>Apollo Client page</title><script src="/bundle.js"></script>`))
	})
	mux.HandleFunc("GET /bundle.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, bundle)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// openPlainTab opens url in a new browser context of its own and waits for
// the page's script to have run.
func openPlainTab(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	require.NoError(t, attachChromedp(ctx, browserStepTimeout), "open a tab")
	step, stop := context.WithTimeout(ctx, browserStepTimeout)
	defer stop()
	require.NoError(t, chromedp.Do(step, chromedp.Navigate(url)), "load %s", url)
	evalPage[bool](t, ctx, `typeof switchboardTest === 'object'`)
	return ctx
}

// evalPage evaluates a JavaScript expression in the tab, awaiting it when
// it is a promise, and decodes its value.
func evalPage[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}
