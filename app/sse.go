package app

import (
	"cmp"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/stream"
	"github.com/switchboardhq/switchboard/web"
)

// sseRetry is the reconnection delay the event stream asks an EventSource
// for: after a restart, it is back within about this long.
const sseRetry = time.Second

// graphQLOverSSE is the transport of GraphQL over Server-Sent Events, in
// the graphql-sse protocol's "distinct connections" mode: a GET or POST to
// /graphql with Accept: text/event-stream, carrying its operation as
// graphQLOverHTTP reads it, is answered with an event stream. Each result
// is a "next" event whose data is the GraphQL response; "complete" follows
// the last. A query or mutation thus gets one next and complete; a
// subscription a next per event until either side ends it.
//
// Everything that goes wrong before the operation runs (a request it cannot
// read, a document that does not validate, a limit) is a next event with
// the errors and their codes, then complete, in a 200 response: the
// protocol asks for that, since an EventSource reports no more than "error"
// for any other status.
//
// The events of durable streams (statusPosted, messageAdded,
// notificationAdded) carry their position as the event's id. A client that
// reconnects with that id in Last-Event-ID (an EventSource does so by
// itself) resumes after it, whatever after its request says: nothing missed,
// nothing twice.
//
// A subscription's stream is a connection as a WebSocket is: it counts
// against LIMIT_CONNS_PER_ADDR (with the WebSockets, through ws) and
// LIMIT_CONNS_PER_USER; its token's expiry and its session's end finish it
// (an UNAUTHENTICATED error, then complete); a comment every keepAlive
// keeps proxies from cutting it; the server's shutdown ends it, and an
// EventSource comes back after sseRetry to where it was.
type graphQLOverSSE struct {
	log       *slog.Logger
	ws        *gqlws.Transport
	userConns *userConns
	keepAlive time.Duration
	compress  bool          // gzip for clients that accept it (WS_COMPRESSION)
	panics    *panics.Guard // every goroutine a stream starts recovers through it

	groups sseGroups // shared delivery (ssegroups.go)

	mu       sync.Mutex
	streams  map[*sseStream]struct{}
	shutdown bool
}

var _ graphql.Transport = (*graphQLOverSSE)(nil)

// sseStream is one subscription's open event stream.
type sseStream struct {
	end     context.CancelCauseFunc
	session string
}

// Why a stream ended before its operation did.
var (
	errSSEShutdown     = errors.New("server shutting down")
	errSSESessionEnded = errors.New("session ended: sign in again")
	errSSETokenExpired = errors.New("token expired: sign in again")
	errSSEGone         = errors.New("the client stopped reading")
)

func newGraphQLOverSSE(log *slog.Logger, ws *gqlws.Transport, conns *userConns, keepAlive time.Duration, compress bool, guard *panics.Guard) *graphQLOverSSE {
	return &graphQLOverSSE{log: log, ws: ws, userConns: conns, keepAlive: keepAlive, compress: compress, panics: guard, streams: make(map[*sseStream]struct{}),
		groups: sseGroups{groups: make(map[string]*sseGroup), panics: guard}}
}

// Supports claims GETs and POSTs that accept text/event-stream.
func (t *graphQLOverSSE) Supports(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodPost) && acceptsEventStream(r.Header.Get("Accept"))
}

// acceptsEventStream reports whether an Accept header names
// text/event-stream with a quality above zero.
func acceptsEventStream(accept string) bool {
	for media, q := range request.Accepted(accept) {
		if media == "text/event-stream" {
			return q > 0
		}
	}
	return false
}

// Len is the number of open subscription streams.
func (t *graphQLOverSSE) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}

// Shutdown ends every stream and refuses new subscriptions (their clients
// come back to another replica, or to this one restarted).
func (t *graphQLOverSSE) Shutdown() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.shutdown = true
	for s := range t.streams {
		s.end(errSSEShutdown)
	}
}

// EndSessions ends the streams of the sessions named.
func (t *graphQLOverSSE) EndSessions(sessions ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.streams {
		if s.session != "" && slices.Contains(sessions, s.session) {
			s.end(errSSESessionEnded)
		}
	}
}

// Do answers the request with an event stream (see graphQLOverSSE), or,
// for anything but a subscription from a client that accepts JSON too
// (urql asks for both), as graphQLOverHTTP answers.
func (t *graphQLOverSSE) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	p := prepare(r, exec)
	if media, ok := acceptedJSON(r.Header.Get("Accept")); ok &&
		(p.refused != nil || p.errs != nil || p.rc.Operation.Operation != ast.Subscription) {
		graphQLOverHTTP{t.log}.answer(w, r, exec, media, p)
		return
	}
	resume, badID := lastEventID(r)

	out := newSSEWriter(w, t.compress && web.AcceptsGzip(r.Header.Get("Accept-Encoding")))
	defer out.finish()
	// The request is read: the server's ReadTimeout has nothing more to
	// bound on a stream that lasts (net/http watches the connection for
	// the client's going away with a read, which must not time out).
	_ = out.rc.SetReadDeadline(time.Time{})
	out.open()

	// A request refused before its operation ran: its errors without a
	// data entry, as writeRefusal answers over HTTP.
	fail := func(ctx context.Context, refused *requestError) {
		logRefusal(t.log, r, refused.status, refused.errs)
		out.event("next", "", refusal(exec.DispatchError(ctx, refused.errs)))
		out.event("complete", "", nil)
	}
	switch {
	case p.refused != nil:
		fail(ctx, p.refused)
		return
	case p.errs != nil:
		fail(graphql.WithOperationContext(ctx, p.rc), &requestError{status: http.StatusOK, errs: p.errs})
		return
	case r.Method == http.MethodGet && p.rc.Operation.Operation == ast.Mutation:
		fail(ctx, badRequest(http.StatusMethodNotAllowed, "GET runs queries and subscriptions only: send a mutation with POST"))
		return
	case badID != nil && p.rc.Operation.Operation == ast.Subscription:
		fail(ctx, badID)
		return
	}
	opCtx := p.rc

	if opCtx.Operation.Operation != ast.Subscription {
		responses, ctx := exec.DispatchOperation(ctx, opCtx)
		out.event("next", "", responses(ctx))
		out.event("complete", "", nil)
		return
	}

	ctx, end, done, refused := t.begin(r)
	if refused != nil {
		fail(ctx, refused)
		return
	}
	defer done()
	defer t.ws.CountSubscription(opCtx)()
	var expires time.Time
	if p, ok := auth.PrincipalFrom(ctx); ok {
		expires = p.ExpiresAt
	}
	t.keepStreamAlive(ctx, end, out, expires)

	// On its own until it has caught up; then, for a stream others may
	// share, in its group (ssegroups.go).
	var join joiner
	share, shareable := t.shareOf(ctx, opCtx)
	if shareable {
		params := p.params
		join = func(pos int64, at *sseGroup, atHead int64) *sseMember {
			return t.groups.join(ctx, share, pos, at, atHead, func(gctx context.Context, start int64) (graphql.ResponseHandler, context.Context, error) {
				gctx = gqlws.AsLeader(gctx) // nobody's: each member's own execution counted it
				rc, errs := exec.CreateOperationContext(gctx, params)
				if errs != nil {
					return nil, nil, errs
				}
				responses, rctx := exec.DispatchOperation(stream.WithResume(gctx, start), rc)
				return responses, rctx, nil
			})
		}
	}
	m, state := t.followPrivately(ctx, out, exec, opCtx, resume, share, join)
	if state == streamStopped {
		// Its group could not take it: on its own for good.
		m, state = t.followPrivately(ctx, out, exec, opCtx, resume, share, nil)
	}
	switch state {
	case streamGone:
		return
	case streamJoined:
		state = t.followShared(ctx, out, m)
		if state != streamEnded {
			return // gone, or let go by its group: its client resumes
		}
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errSSEShutdown):
		return // no complete: the client reconnects and resumes
	case errors.Is(cause, errSSESessionEnded), errors.Is(cause, errSSETokenExpired):
		err := gqlerror.Errorf("%s", cause.Error())
		errcode.Set(err, string(models.Unauthenticated))
		out.event("next", "", refusal(exec.DispatchError(ctx, gqlerror.List{err})))
	case errors.Is(cause, errSSEGone), r.Context().Err() != nil:
		return // the client is gone
	}
	out.event("complete", "", nil)
}

// shareOf says how a subscription may share delivery (ssegroups.go), as
// its WebSocket subscribers do.
func (t *graphQLOverSSE) shareOf(ctx context.Context, rc *graphql.OperationContext) (sseShare, bool) {
	if key, _, ok := t.ws.ShareableStream(ctx, rc); ok {
		return sseShare{key: key}, true
	}
	if key, ok := t.ws.ShareableLatest(ctx, rc); ok {
		return sseShare{key: key, latest: true}, true
	}
	if sp, ok := t.ws.ShareableSpanning(ctx, rc); ok {
		return sseShare{key: sp.Key, latest: sp.Latest, spanning: true, following: sp.Following, scope: sp.Scope, maxGroups: sp.MaxGroups}, true
	}
	return sseShare{}, false
}

// What became of a stream's operation.
type streamState int

const (
	streamEnded   streamState = iota // the operation ended, or the stream's context did
	streamGone                       // the client went away or stopped reading, or its group let it go
	streamJoined                     // it joined a group (followPrivately)
	streamStopped                    // it stopped to join a group at its head, which did not take it (followPrivately)
)

// joiner puts a stream into its group (see sseGroups.join).
type joiner func(pos int64, at *sseGroup, atHead int64) *sseMember

// followPrivately runs a subscription on its own, writing each event (with
// its position as id, for a durable stream), from after resume if it is not
// nil. With join, each time its stream has caught up and every event it
// sent is written, it offers its position to join (for a latest-value
// stream, the version of each value it has written); once join takes it,
// the private execution stops and the member is returned. A stream of a
// following field (share.following), whose positions are its own count,
// stops its execution the moment it has caught up, noting its group's head
// then, and joins there; streamStopped if the group does not take it.
func (t *graphQLOverSSE) followPrivately(ctx context.Context, out *sseWriter, exec graphql.GraphExecutor, opCtx *graphql.OperationContext, resume *int64, share sseShare, join joiner) (*sseMember, streamState) {
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	ectx, stopExec := context.WithCancel(pctx) // the execution's
	defer stopExec()
	var sent announcements
	caught := make(chan int64, 1)
	// Where a following field's stream stopped: set once, by its own
	// stream, before its results end.
	var at struct {
		sync.Mutex
		stopped bool
		group   *sseGroup
		head    int64
	}
	// The subscriber (online in a chat room while it follows messageAdded,
	// say) lives as long as the stream, not as this execution.
	octx := gqlws.WithLifetime(ectx, ctx)
	switch {
	case share.latest:
		octx = live.WithVersionRecorder(octx, sent.push)
	case share.following && join != nil:
		octx = stream.WithPositionRecorder(octx, sent.push, func(int64) {
			at.Lock()
			defer at.Unlock()
			if !at.stopped {
				at.stopped = true
				at.group, at.head = t.groups.head(share.key)
				stopExec() // it sends nothing more: what follows, the group has
			}
		})
	default:
		octx = stream.WithPositionRecorder(octx, sent.push, func(pos int64) {
			select { // keep only the newest
			case <-caught:
			default:
			}
			caught <- pos
		})
	}
	if resume != nil {
		octx = stream.WithResume(octx, *resume)
	}
	responses, rctx := exec.DispatchOperation(octx, opCtx)
	// The results are read here, one at a time: the next is read only once
	// the loop below has written this one (done), since gqlgen may reuse a
	// result's buffers for the next.
	results := make(chan *graphql.Response)
	done := make(chan struct{}, 1) // never blocks the loop: the pump may be gone
	t.panics.Go(ctx, "sse.subscription", func() {
		defer close(results) // a panic here ends the stream, as the operation's end does
		for {
			t.panics.Point("sse.subscription")
			resp := responses(rctx)
			select {
			case results <- resp:
			case <-pctx.Done():
				return
			}
			if resp == nil {
				return
			}
			select {
			case <-done:
			case <-pctx.Done():
				return
			}
		}
	})
	written := int64(-1)     // the position of the newest event written
	caughtUp := share.latest // the stream has caught up once (a latest-value one always has)
	for {
		select {
		case resp := <-results:
			if resp == nil {
				at.Lock()
				stopped, group, head := at.stopped, at.group, at.head
				at.Unlock()
				if !stopped || ctx.Err() != nil {
					return nil, streamEnded
				}
				if m := join(0, group, head); m != nil {
					return m, streamJoined
				}
				return nil, streamStopped
			}
			id := ""
			if ev, ok := sent.pop(); ok && resp.Data != nil {
				written = ev.pos
				if !share.latest {
					id = strconv.FormatInt(ev.pos, 10)
				}
			}
			if !out.event("next", id, resp) {
				return nil, streamGone
			}
			done <- struct{}{}
			// Live, and every event sent is written: hand over here.
			if caughtUp && join != nil && written >= 0 && sent.len() == 0 {
				if m := join(written, nil, 0); m != nil {
					return m, streamJoined
				}
			}
		case pos := <-caught:
			// Every event up to pos was sent (the stream says so once it
			// has replayed what its cursor asked for); if none is still
			// unwritten, hand over at pos, else after a coming write.
			caughtUp = true
			if join == nil || sent.len() > 0 {
				continue
			}
			if m := join(max(pos, written), nil, 0); m != nil {
				return m, streamJoined
			}
		case <-ctx.Done():
			return nil, streamEnded
		}
	}
}

// followShared writes a group member's events until its stream ends or
// its group lets it go.
func (t *graphQLOverSSE) followShared(ctx context.Context, out *sseWriter, m *sseMember) streamState {
	g := m.group
	defer g.leave(m)
	for {
		select {
		case f := <-m.frames:
			if !out.frame(f) {
				return streamGone
			}
		case <-m.gone:
			return streamGone
		case <-ctx.Done():
			return streamEnded
		}
	}
}

// begin registers a subscription's stream: it takes a place among the
// connections of its address and of its user, and returns the context that
// end cancels (with the reason), and done, which gives everything back.
func (t *graphQLOverSSE) begin(r *http.Request) (context.Context, context.CancelCauseFunc, func(), *requestError) {
	releaseAddr, err := t.ws.HoldAddress(r)
	switch {
	case errors.Is(err, gqlws.ErrShuttingDown):
		return r.Context(), nil, nil, unavailable("the server is shutting down: connect again")
	case err != nil:
		return r.Context(), nil, nil, rateLimited("too many connections from this address (LIMIT_CONNS_PER_ADDR)")
	}
	p, _ := auth.PrincipalFrom(r.Context())
	releaseUser, err := t.userConns.hold(p)
	if err != nil {
		releaseAddr()
		var later *gqlws.TryAgainLater
		if errors.As(err, &later) {
			return r.Context(), nil, nil, rateLimited(later.Reason)
		}
		return r.Context(), nil, nil, rateLimited(err.Error())
	}
	release := func() {
		releaseAddr()
		if releaseUser != nil { // nil for an anonymous stream, or without LIMIT_CONNS_PER_USER
			releaseUser()
		}
	}
	ctx, end := context.WithCancelCause(r.Context())
	s := &sseStream{end: end}
	if p != nil {
		s.session = p.SessionID
	}
	t.mu.Lock()
	if t.shutdown {
		t.mu.Unlock()
		end(errSSEShutdown)
		release()
		return r.Context(), nil, nil, unavailable("the server is shutting down: connect again")
	}
	t.streams[s] = struct{}{}
	t.mu.Unlock()
	return ctx, end, func() {
		t.mu.Lock()
		delete(t.streams, s)
		t.mu.Unlock()
		end(nil)
		release()
	}, nil
}

// keepStreamAlive writes a comment into an idle stream every keepAlive, and
// ends the stream (end) when its token expires, until ctx ends: with
// timers, not a goroutine per stream, since most streams are idle most of
// the time. A timer's function that panics is recovered (where
// sse.keepalive) and keeps the stream's keepalive stopped.
func (t *graphQLOverSSE) keepStreamAlive(ctx context.Context, end context.CancelCauseFunc, out *sseWriter, expires time.Time) {
	interval := cmp.Or(t.keepAlive, 25*time.Second)
	var tick *time.Timer
	tick = time.AfterFunc(interval, func() {
		defer t.panics.Recover(ctx, "sse.keepalive", nil)
		if ctx.Err() != nil {
			return
		}
		if out.idleFor() >= interval/2 && !out.comment("keepalive") {
			end(errSSEGone)
			return
		}
		tick.Reset(interval)
	})
	var expiry *time.Timer
	if !expires.IsZero() {
		expiry = time.AfterFunc(time.Until(expires), func() { end(errSSETokenExpired) })
	}
	context.AfterFunc(ctx, func() {
		tick.Stop()
		if expiry != nil {
			expiry.Stop()
		}
	})
}

// refusal is resp, errors that no execution produced, without its data
// entry.
func refusal(resp *graphql.Response) any {
	return struct {
		Errors     gqlerror.List  `json:"errors"`
		Extensions map[string]any `json:"extensions,omitempty"`
	}{resp.Errors, resp.Extensions}
}

// lastEventID reads the Last-Event-ID header: the position of the last
// event the client received, or nil.
func lastEventID(r *http.Request) (*int64, *requestError) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return nil, nil
	}
	pos, err := strconv.ParseInt(v, 10, 64)
	if err != nil || pos < 0 {
		return nil, badRequest(http.StatusBadRequest, "Last-Event-ID must be the id of an event this server sent")
	}
	return &pos, nil
}

// rateLimited is a refusal by a limit on connections.
func rateLimited(msg string) *requestError {
	err := gqlerror.Errorf("%s", msg)
	errcode.Set(err, string(models.RateLimited))
	return &requestError{status: http.StatusTooManyRequests, errs: gqlerror.List{err}}
}

// unavailable is a refusal of a server that cannot take the stream now.
func unavailable(msg string) *requestError {
	err := gqlerror.Errorf("%s", msg)
	errcode.Set(err, string(models.Unavailable))
	return &requestError{status: http.StatusServiceUnavailable, errs: gqlerror.List{err}}
}

// sseWriter writes one event stream: whole events, each flushed at once,
// from any goroutine. With gzip (the client accepts it and WS_COMPRESSION
// is on) the stream is one gzip member whose deflate blocks are made event
// by event by a pooled compressor, as permessage-deflate without context
// takeover does on the WebSockets: no compressor is held per stream.
type sseWriter struct {
	mu       sync.Mutex
	w        http.ResponseWriter
	rc       *http.ResponseController
	broken   bool
	lastSent time.Time

	gzip bool
	crc  uint32 // of the text written so far, for the gzip trailer
	size uint32 // its length, modulo 2^32
}

func newSSEWriter(w http.ResponseWriter, gzip bool) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), gzip: gzip}
}

// gzipHeader is a gzip member's header: deflate, no name, no time, Unix.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}

// sseCompressors are the deflate compressors of the event streams.
var sseCompressors = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // a valid level: no error
	return w
}}

// open sends the stream's headers and its reconnection delay.
func (s *sseWriter) open() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	h.Add("Vary", "Accept-Encoding")
	if s.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	s.w.WriteHeader(http.StatusOK)
	if s.gzip {
		_, _ = s.w.Write(gzipHeader) // goes out with the first text
	}
	s.write([]byte("retry: " + strconv.FormatInt(sseRetry.Milliseconds(), 10) + "\n\n"))
}

// event writes one event, with the id if it is not empty, and data as
// JSON (none when nil). It reports whether the stream still works.
func (s *sseWriter) event(name, id string, data any) bool {
	text, ok := sseEventText(name, id, data)
	return ok && s.write(text)
}

// sseEventText is one event, with the id if it is not empty, and data as
// JSON (none when nil); ok is false if data is not JSON.
func sseEventText(name, id string, data any) (text []byte, ok bool) {
	text = append(append(text, "event: "...), name...)
	if id != "" {
		text = append(append(text, "\nid: "...), id...)
	}
	text = append(text, "\ndata:"...)
	if data != nil {
		j, err := json.Marshal(data)
		if err != nil {
			return nil, false
		}
		text = append(append(text, ' '), j...) // JSON has no raw newline
	}
	return append(text, "\n\n"...), true
}

// frame writes a group's event, gzipped once for all its members.
func (s *sseWriter) frame(f *sseFrame) bool {
	if !s.gzip {
		return s.write(f.text)
	}
	return s.writeDeflated(f.text, f.deflated())
}

// comment writes a comment line, which every client ignores.
func (s *sseWriter) comment(text string) bool {
	return s.write([]byte(": " + text + "\n\n"))
}

// idleFor is how long ago the last write was.
func (s *sseWriter) idleFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastSent)
}

// sseWriteTimeout is how long one write may take: a client that reads
// nothing for that long is dropped, as a slow WebSocket consumer is.
const sseWriteTimeout = 10 * time.Second

func (s *sseWriter) write(text []byte) bool {
	return s.writeDeflated(text, nil)
}

// writeDeflated writes text: as deflated, its deflate blocks, when it is
// not nil and the stream is gzipped; compressed here when it is nil.
func (s *sseWriter) writeDeflated(text, deflated []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return false
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	var err error
	switch {
	case !s.gzip:
		_, err = s.w.Write(text)
	case deflated != nil:
		_, err = s.w.Write(deflated)
	default:
		fw := sseCompressors.Get().(*flate.Writer)
		fw.Reset(s.w)
		if _, err = fw.Write(text); err == nil {
			err = fw.Flush() // non-final blocks, ending on a byte boundary
		}
		fw.Reset(io.Discard) // hold no reference to the response
		sseCompressors.Put(fw)
	}
	if s.gzip && err == nil {
		s.crc = crc32.Update(s.crc, crc32.IEEETable, text)
		s.size += uint32(len(text))
	}
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		s.broken = true
		return false
	}
	s.lastSent = time.Now()
	return true
}

// finish ends a gzip stream properly (a final deflate block and the
// trailer), when the server ends the stream.
func (s *sseWriter) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gzip || s.broken {
		s.broken = true // a keepalive that fires late writes nothing
		return
	}
	trailer := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0} // an empty final fixed-Huffman block, CRC-32, size
	binary.LittleEndian.PutUint32(trailer[2:], s.crc)
	binary.LittleEndian.PutUint32(trailer[6:], s.size)
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := s.w.Write(trailer); err == nil {
		_ = s.rc.Flush()
	}
	s.broken = true // nothing more may follow
}
