package app

import (
	"log/slog"
	"net/http"

	"github.com/99designs/gqlgen/graphql"

	"github.com/switchboardhq/switchboard/request"
)

// withBodyLimit bounds request bodies at limit bytes (0: no limit). A body
// declaring a larger length is refused at once, before anything of it is
// read; one of unknown length (chunked) is cut at the limit, which the
// GraphQL transport answers the same way: 413 with BAD_REQUEST.
func withBodyLimit(limit int64, log *slog.Logger, next http.Handler) http.Handler {
	if limit <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			refused := bodyTooLarge(limit)
			logRefusal(log, r, refused.status, refused.errs)
			writeRefusal(w, responseMediaType(r.Header.Get("Accept")), refused.status, &graphql.Response{Errors: refused.errs})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// logRefusals logs the refusals that the handlers under it answer without
// a log line of their own: 401 as "authentication refused" (the token
// middleware) and 429 as "rate limit hit", at info with the request id,
// client and status. WebSocket upgrades pass through untouched: gqlws's
// hooks log them.
func logRefusals(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		var msg string
		switch rec.status {
		case http.StatusUnauthorized:
			msg = "authentication refused"
		case http.StatusTooManyRequests:
			msg = "rate limit hit"
		default:
			return
		}
		log.InfoContext(r.Context(), msg, "client", request.ClientAddr(r.Context()), "method", r.Method, "status", rec.status)
	})
}

// statusRecorder is a ResponseWriter that remembers the status written.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(status int) {
	if !s.wrote {
		s.status, s.wrote = status, true
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
