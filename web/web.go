// Package web serves Switchboard's browser interface. The page, its style
// sheet and its JavaScript modules live in the static directory and are
// compiled into the binary, so a running server needs nothing on disk to
// show them. The page speaks to the same server's /graphql endpoint: over
// HTTP for queries and mutations, and over a WebSocket using the
// graphql-transport-ws protocol for live updates.
package web

import (
	"bytes"
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
)

//go:embed static
var static embed.FS

// The Content-Security-Policy around its connect-src: the page loads only
// its own files, and inline scripts and styles are refused.
const (
	policyHead = "default-src 'self'; connect-src 'self'"
	policyTail = "; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'"
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
func contentSecurityPolicy(host, others string) string {
	if !validHost(host) {
		return policyHead + others + policyTail
	}
	return policyHead + " ws://" + host + " wss://" + host + others + policyTail
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

// asset is one embedded file, ready to serve.
type asset struct {
	data        []byte
	contentType string
	etag        string
}

// assets maps request paths to files, with index.html also served at "/".
// It is built once, the first time a handler is made.
var assets = sync.OnceValue(func() map[string]asset {
	m := make(map[string]asset)
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ext := path.Ext(name)
		ctype, ok := contentTypes[ext]
		if !ok {
			ctype = mime.TypeByExtension(ext)
		}
		if ctype == "" {
			ctype = http.DetectContentType(data)
		}
		a := asset{
			data:        data,
			contentType: ctype,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		}
		urlPath := strings.TrimPrefix(name, "static")
		m[urlPath] = a
		if path.Base(urlPath) == "index.html" {
			m[strings.TrimSuffix(urlPath, "index.html")] = a
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic("web: reading embedded files: " + err.Error())
	}
	return m
})

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
	files := assets()
	var others strings.Builder
	for _, o := range opts.AllowedOrigins {
		if ws := webSocketOrigin(o); ws != "" {
			others.WriteString(" " + ws)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy(r.Host, others.String()))
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
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
	})
}
