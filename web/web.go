// Package web serves Switchboard's browser interface and its GraphiQL
// playground. The page, its style sheet and its JavaScript modules live in
// the static directory; the playground, GraphiQL bundled with its
// dependencies by the generate step below, in the playground directory.
// Both are compiled into the binary, so a running server needs nothing on
// disk and nothing from another host to show them. Both speak to the same
// server's /graphql endpoint: over HTTP for queries and mutations, and over
// a WebSocket using the graphql-transport-ws protocol for live updates.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/request"
)

// The playground is built from the npm packages that graphiql/package-lock.json
// pins (Node.js needed); CI checks that the committed files are current.
//go:generate npm ci --prefix graphiql --no-audit --no-fund --loglevel=error
//go:generate node graphiql/build.mjs

//go:embed static playground
var embedded embed.FS

// The Content-Security-Policy around its connect-src: a page loads only its
// own files, and inline scripts and styles are refused.
const (
	policyHead = "default-src 'self'; connect-src 'self'"
	policyTail = "; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'"
	// The playground's style sheet carries GraphiQL's fonts as data: URLs.
	playgroundPolicyTail = "; img-src 'self' data:; font-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)

// Options configure Handler.
type Options struct {
	// AllowedOrigins are origins (https://app.example.com) to whose
	// WebSocket endpoints (wss://app.example.com) the page may connect
	// besides its own; "*" adds none.
	AllowedOrigins []string
}

// webSocketOrigin is the WebSocket origin of an http(s) origin, or "" for
// anything else.
func webSocketOrigin(origin string) string {
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || !validHost(host) {
		return ""
	}
	switch strings.ToLower(scheme) {
	case "https":
		return "wss://" + host
	case "http":
		return "ws://" + host
	}
	return ""
}

// validHost reports whether host is a host[:port] that can stand in a
// policy as it is: letters, digits, dots, hyphens, colons and the brackets
// of an IPv6 address, nothing that would end a source or a directive.
func validHost(host string) bool {
	return host != "" && !strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(".-:[]", r))
	})
}

// contentSecurityPolicy is the policy of a response to a request for host:
// connect-src allows the page's own origin ('self', for its HTTP
// requests), the WebSocket origins of host (ws: and wss:, which 'self'
// does not cover in every browser; a page served over HTTPS may open only
// the second) and the others given.
func contentSecurityPolicy(host, others, tail string) string {
	if !validHost(host) {
		return policyHead + others + tail
	}
	return policyHead + " ws://" + host + " wss://" + host + others + tail
}

// contentTypes fixes the media types of the files the interface uses, so
// that they do not depend on the host's MIME tables.
var contentTypes = map[string]string{
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".ico":  "image/x-icon",
	".js":   "text/javascript; charset=utf-8",
	".json": "application/json",
	".png":  "image/png",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
}

// compressible are the media types worth sending gzipped; the others
// (images, fonts) are compressed already.
var compressible = map[string]bool{
	".css": true, ".html": true, ".js": true, ".json": true, ".svg": true, ".txt": true,
}

// minGzip is the size under which a file is always sent as it is.
const minGzip = 1024

// asset is one embedded file, ready to serve.
type asset struct {
	data        []byte
	contentType string
	etag        string
	// gzipped is the file gzipped, made the first time a client that
	// accepts gzip asks for it; nil for files sent only as they are.
	gzipped func() []byte
}

// newAsset prepares an embedded file named name for serving.
func newAsset(name string, data []byte) *asset {
	sum := sha256.Sum256(data)
	ext := path.Ext(name)
	ctype, ok := contentTypes[ext]
	if !ok {
		ctype = mime.TypeByExtension(ext)
	}
	if ctype == "" {
		ctype = http.DetectContentType(data)
	}
	a := &asset{
		data:        data,
		contentType: ctype,
		etag:        base64.RawURLEncoding.EncodeToString(sum[:16]),
	}
	if compressible[ext] && len(data) >= minGzip {
		a.gzipped = sync.OnceValue(func() []byte {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // a valid level: no error
			_, _ = zw.Write(data)                                  // a bytes.Buffer does not fail
			_ = zw.Close()
			return b.Bytes()
		})
	}
	return a
}

// assetsIn maps request paths under prefix to the files of the embedded
// directory dir; an index.html is also served at its directory's path,
// with and without the trailing slash (but for the root, "/" only).
func assetsIn(dir, prefix string) map[string]*asset {
	m := make(map[string]*asset)
	err := fs.WalkDir(embedded, dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := embedded.ReadFile(name)
		if err != nil {
			return err
		}
		a := newAsset(name, data)
		urlPath := prefix + strings.TrimPrefix(name, dir)
		m[urlPath] = a
		if path.Base(urlPath) == "index.html" {
			index := strings.TrimSuffix(urlPath, "index.html")
			m[index] = a
			if index != "/" {
				m[strings.TrimSuffix(index, "/")] = a
			}
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic("web: reading embedded files: " + err.Error())
	}
	return m
}

// The two sets of files, each built the first time its handler is made.
var (
	siteAssets       = sync.OnceValue(func() map[string]*asset { return assetsIn("static", "") })
	playgroundAssets = sync.OnceValue(func() map[string]*asset { return assetsIn("playground", "/playground") })
)

// Handler returns the handler that serves the web interface: the page itself
// at "/" and its style sheet, scripts and icon at their own paths, such as
// "/app.js" and "/style.css". Any other path is answered with 404 Not Found,
// and methods other than GET and HEAD with 405 Method Not Allowed.
//
// Every response forbids inline scripts and styles and framing through its
// Content-Security-Policy header, which lets the page connect only to its
// own origin (over HTTP and WebSocket, the host as the request names it)
// and to the WebSocket endpoints of opts.AllowedOrigins; it also turns off
// content sniffing and asks browsers to revalidate before reusing a cached
// copy; files carry an ETag, so revalidation usually ends in 304 Not
// Modified.
//
// The handler expects to be mounted at the root of the server, next to the
// /graphql endpoint that the page talks to.
func Handler(opts Options) http.Handler {
	return serve(siteAssets(), opts, policyTail)
}

// Playground returns the handler that serves GraphiQL: the page at
// "/playground" (and "/playground/") and its files under "/playground/",
// with the same headers as Handler's, but for a policy that also lets the
// page use the fonts its style sheet carries. Nothing it loads comes from
// another host. The page reads the schema from /schema.graphql and runs
// operations against /graphql on the same server.
func Playground(opts Options) http.Handler {
	return serve(playgroundAssets(), opts, playgroundPolicyTail)
}

// serve answers requests for files, with the security headers and a
// Content-Security-Policy ending in tail; see Handler.
func serve(files map[string]*asset, opts Options, tail string) http.Handler {
	var others strings.Builder
	for _, o := range opts.AllowedOrigins {
		if ws := webSocketOrigin(o); ws != "" {
			others.WriteString(" " + ws)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy(r.Host, others.String(), tail))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")

		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", f.contentType)
		data, etag := f.data, f.etag
		if f.gzipped != nil {
			h.Add("Vary", "Accept-Encoding")
			if AcceptsGzip(r.Header.Get("Accept-Encoding")) {
				// A representation of its own: its own ETag, so that a cache
				// never answers one encoding's revalidation with the other's.
				data, etag = f.gzipped(), etag+"-gzip"
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", `"`+etag+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})
}

// AcceptsGzip reports whether an Accept-Encoding header value accepts gzip
// (by name or as *) with a quality above zero; the first of them decides.
func AcceptsGzip(accept string) bool {
	for coding, q := range request.Accepted(accept) {
		if coding == "gzip" || coding == "x-gzip" || coding == "*" {
			return q > 0
		}
	}
	return false
}
