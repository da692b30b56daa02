package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/web"
)

func get(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func checkSecurityHeaders(t *testing.T, rec *httptest.ResponseRecorder, target string) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; connect-src 'self' ws://example.com wss://example.com; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-cache",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", target, k, got, v)
		}
	}
}

func TestFiles(t *testing.T) {
	h := web.Handler(web.Options{})
	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/app.js"></script>`},
		{"/index.html", "text/html; charset=utf-8", "<title>Switchboard</title>"},
		{"/app.js", "text/javascript; charset=utf-8", "statusPosted"},
		{"/client.js", "text/javascript; charset=utf-8", "graphql-transport-ws"},
		{"/chat.js", "text/javascript; charset=utf-8", "messageAdded"},
		{"/dashboard.js", "text/javascript; charset=utf-8", "kpiUpdated"},
		{"/notifications.js", "text/javascript; charset=utf-8", "unreadCount"},
		{"/admin.js", "text/javascript; charset=utf-8", "sendNotification"},
		{"/ui.js", "text/javascript; charset=utf-8", "textContent"},
		{"/style.css", "text/css; charset=utf-8", ":root"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		rec := get(t, h, http.MethodGet, c.path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", c.path, rec.Code)
			continue
		}
		checkSecurityHeaders(t, rec, c.path)
		if got := rec.Header().Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
	}
}

func TestNotFound(t *testing.T) {
	h := web.Handler(web.Options{})
	for _, p := range []string{"/nope", "/static/app.js", "/app.js/", "/graphql", "/.hidden", "/../web.go"} {
		rec := get(t, h, http.MethodGet, p, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, rec.Code)
		}
		checkSecurityHeaders(t, rec, p)
	}
}

func TestMethods(t *testing.T) {
	h := web.Handler(web.Options{})
	rec := get(t, h, http.MethodHead, "/app.js", nil)
	if rec.Code != http.StatusOK {
		t.Errorf("HEAD /app.js: status %d, want 200", rec.Code)
	}
	rec = get(t, h, http.MethodPost, "/", nil)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", rec.Code)
	}
	if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
		t.Errorf("POST /: Allow %q", got)
	}
}

func TestETag(t *testing.T) {
	h := web.Handler(web.Options{})
	rec := get(t, h, http.MethodGet, "/app.js", nil)
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("GET /app.js: no ETag")
	}
	rec = get(t, h, http.MethodGet, "/app.js", http.Header{"If-None-Match": {etag}})
	if rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET /app.js: status %d, want 304", rec.Code)
	}
}

// TestPageFollowsPolicy checks that the page needs nothing the
// Content-Security-Policy forbids: no inline scripts, styles or handlers, and
// no resources from elsewhere.
func TestPageFollowsPolicy(t *testing.T) {
	h := web.Handler(web.Options{})
	page := get(t, h, http.MethodGet, "/", nil).Body.String()
	forbidden := map[string]*regexp.Regexp{
		"inline script":     regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`),
		"style element":     regexp.MustCompile(`<style`),
		"style attribute":   regexp.MustCompile(`\sstyle=`),
		"event handler":     regexp.MustCompile(`\son[a-z]+=`),
		"external resource": regexp.MustCompile(`(?:src|href)="(?:[a-z]+:)?//`),
		"javascript: URL":   regexp.MustCompile(`(?i)javascript:`),
	}
	for what, re := range forbidden {
		if loc := re.FindStringIndex(page); loc != nil {
			t.Errorf("index.html has a forbidden %s near %q", what, page[loc[0]:min(loc[1]+20, len(page))])
		}
	}
	// Every local file the page refers to is served.
	for _, m := range regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1) {
		if rec := get(t, h, http.MethodGet, m[1], nil); rec.Code != http.StatusOK {
			t.Errorf("index.html refers to %s, which answers %d", m[1], rec.Code)
		}
	}
	// Every id the browser tests drive is present.
	for _, id := range []string{"conn", "signin-form", "name", "signin", "me", "signout", "post-form", "status-text", "post", "post-error", "statuses", "load-more", "statuses-panel",
		"chat-panel", "rooms", "room-search", "more-rooms", "rooms-empty", "room-form", "room-name", "create-room", "people-search", "people-results",
		"chat-room", "online-list", "messages", "load-older", "typing", "message-form", "message-text", "send", "message-error",
		"token-signin", "token-form", "token", "token-submit", "token-error", "me-id",
		"dashboard-panel", "kpi-cards", "top-movers", "bell", "bell-badge", "notif-panel", "notif-list", "notif-read-all",
		"admin-panel", "notify-form", "notify-user", "notify-title", "notify-link", "notify-send", "notify-error",
		"kpi-form", "kpi-module", "kpi-key", "kpi-value", "kpi-record", "kpi-error"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("index.html lacks #%s", id)
		}
	}
}

// TestScriptsWriteNoHTML checks that the page's scripts never turn strings
// into markup: everything the server sends is shown with textContent.
func TestScriptsWriteNoHTML(t *testing.T) {
	h := web.Handler(web.Options{})
	sink := regexp.MustCompile(`\b(?:innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser)\b`)
	// Every script in the static directory, so that a new one is checked too.
	scripts, err := filepath.Glob(filepath.Join("static", "*.js"))
	if err != nil || len(scripts) < 7 {
		t.Fatalf("scripts in static/: %v (%v)", scripts, err)
	}
	for _, file := range scripts {
		p := "/" + filepath.Base(file)
		rec := get(t, h, http.MethodGet, p, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", p, rec.Code)
			continue
		}
		body := rec.Body.String()
		if loc := sink.FindStringIndex(body); loc != nil {
			t.Errorf("%s uses %s", p, body[loc[0]:loc[1]])
		}
	}
}

// TestContentSecurityPolicyConnects: the page may connect to its own origin
// over HTTP and WebSocket, as the request names its host, and to the
// WebSocket endpoints of the allowed origins; to nothing else, and nothing
// a request sends widens the policy.
func TestContentSecurityPolicyConnects(t *testing.T) {
	cases := []struct {
		name, host string
		allowed    []string
		connect    string
	}{
		{"own host", "example.com", nil, "'self' ws://example.com wss://example.com"},
		{"own host and port", "127.0.0.1:8080", nil, "'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080"},
		{"IPv6", "[::1]:8080", nil, "'self' ws://[::1]:8080 wss://[::1]:8080"},
		{"allowed origins", "sb.example.com", []string{"https://app.example.com", "http://localhost:3000", "*"},
			"'self' ws://sb.example.com wss://sb.example.com wss://app.example.com ws://localhost:3000"},
		{"a host that would add a source", "evil.example; connect-src *", nil, "'self'"},
		{"a host with a space", "a b", []string{"https://app.example.com"}, "'self' wss://app.example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Host = c.host
			rec := httptest.NewRecorder()
			web.Handler(web.Options{AllowedOrigins: c.allowed}).ServeHTTP(rec, req)
			policy := rec.Header().Get("Content-Security-Policy")
			m := regexp.MustCompile(`(?:^|; )connect-src ([^;]*)(?:;|$)`).FindStringSubmatch(policy)
			if m == nil || m[1] != c.connect {
				t.Errorf("host %q, allowed %q: policy %q, want connect-src %s", c.host, c.allowed, policy, c.connect)
			}
			if strings.Count(policy, "connect-src") != 1 || strings.Contains(policy, "*") {
				t.Errorf("host %q: policy %q", c.host, policy)
			}
		})
	}
}

// TestPlaygroundFiles: the playground's page and everything it loads are
// served under /playground from the binary, under a policy that lets it
// use nothing from another host, and the page names only those files.
func TestPlaygroundFiles(t *testing.T) {
	h := web.Playground(web.Options{})
	cases := []struct {
		path, contentType, contains string
	}{
		{"/playground", "text/html; charset=utf-8", `<script type="module" src="/playground/graphiql.js"></script>`},
		{"/playground/", "text/html; charset=utf-8", `<link rel="stylesheet" href="/playground/graphiql.css">`},
		{"/playground/graphiql.js", "text/javascript; charset=utf-8", "graphql-transport-ws"},
		{"/playground/graphiql.css", "text/css; charset=utf-8", ".graphiql-container"},
		{"/playground/THIRD_PARTY_LICENSES.txt", "text/plain; charset=utf-8", "graphiql@"},
	}
	for _, c := range cases {
		rec := get(t, h, http.MethodGet, c.path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", c.path, rec.Code)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		want := "default-src 'self'; connect-src 'self' ws://example.com wss://example.com; img-src 'self' data:; font-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'"
		if got := rec.Header().Get("Content-Security-Policy"); got != want {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", c.path, got, want)
		}
	}
	for _, p := range []string{"/playground/nope.js", "/playground/../static/app.js", "/app.js"} {
		if rec := get(t, h, http.MethodGet, p, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, rec.Code)
		}
	}

	page := get(t, h, http.MethodGet, "/playground", nil).Body.String()
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("the page names %d files: %s", len(refs), page)
	}
	for _, m := range refs {
		if ref := m[1]; ref != "/favicon.svg" && !strings.HasPrefix(ref, "/playground/") {
			t.Errorf("the page loads %q, not one of its own files", ref)
		} else if rec := get(t, h, http.MethodGet, ref, nil); ref != "/favicon.svg" && rec.Code != http.StatusOK {
			t.Errorf("the page loads %q, which answers %d", ref, rec.Code)
		}
	}
}

// TestGzip: text files of some size go gzipped to clients that accept it,
// as a representation with its own ETag; others get them as they are.
func TestGzip(t *testing.T) {
	h := web.Playground(web.Options{})
	plain := get(t, h, http.MethodGet, "/playground/graphiql.js", nil)
	if plain.Header().Get("Content-Encoding") != "" || plain.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("without Accept-Encoding: Content-Encoding %q, Vary %q", plain.Header().Get("Content-Encoding"), plain.Header().Get("Vary"))
	}

	zipped := get(t, h, http.MethodGet, "/playground/graphiql.js", http.Header{"Accept-Encoding": {"br;q=1.0, gzip;q=0.8"}})
	if got := zipped.Header().Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("with gzip accepted: Content-Encoding %q", got)
	}
	size := zipped.Body.Len()
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, plain.Body.Bytes()) {
		t.Error("the gzipped file does not unzip to the file")
	}
	if size >= plain.Body.Len()/2 {
		t.Errorf("gzipped %d bytes of %d", size, plain.Body.Len())
	}
	t.Logf("graphiql.js: %d bytes, %d gzipped", plain.Body.Len(), size)
	etag := zipped.Header().Get("ETag")
	if etag == plain.Header().Get("ETag") {
		t.Errorf("both representations have the ETag %s", etag)
	}
	if rec := get(t, h, http.MethodGet, "/playground/graphiql.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {etag}}); rec.Code != http.StatusNotModified {
		t.Errorf("revalidating the gzipped file: status %d, want 304", rec.Code)
	}

	for _, accept := range []string{"gzip;q=0", "identity", "br", "gzip;q=zero"} {
		rec := get(t, h, http.MethodGet, "/playground/graphiql.js", http.Header{"Accept-Encoding": {accept}})
		if got := rec.Header().Get("Content-Encoding"); got != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want none", accept, got)
		}
	}
	// Small files are not worth it.
	small := get(t, web.Handler(web.Options{}), http.MethodGet, "/favicon.svg", http.Header{"Accept-Encoding": {"gzip"}})
	if got := small.Header().Get("Content-Encoding"); got != "" {
		t.Errorf("favicon.svg: Content-Encoding %q", got)
	}
}
