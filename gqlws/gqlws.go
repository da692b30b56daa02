// Package gqlws is Switchboard's WebSocket layer: a gqlgen transport of its
// own, on github.com/gorilla/websocket, that speaks graphql-transport-ws
// (the graphql-ws library's protocol) exactly as its specification says, and
// the legacy graphql-ws protocol of Apollo's subscriptions-transport-ws as
// that library's server did. It owns everything between the socket and
// gqlgen's executor: the subprotocol choice, the origin check, connection
// initialisation and its timeout, keepalives, close codes, operation ids,
// write deadlines and shutdown.
//
// Each subprotocol has an adapter (transportws.go, legacy.go) that maps its
// wire messages onto message kinds both share; the connection (conn.go)
// handles those kinds once, and runs each operation through the lifecycle
// of operation.go. Subscriptions with the same results share one execution
// (group.go); frames are written straight to the socket (write.go),
// compressed once for all when they can be (deflate.go).
//
// The close codes tell the standard graphql-ws client what to do next:
// reconnect after a shutdown (1001), a slow read (1013) or an expired token
// (4403), give up after a malformed or abusive exchange. docs/protocol.md
// holds the table of every code, its reason and when it is sent.
package gqlws

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
)

// The subprotocols served.
const (
	// TransportWS is the graphql-ws library's protocol.
	TransportWS = "graphql-transport-ws"
	// LegacyWS is subscriptions-transport-ws's protocol (confusingly named
	// graphql-ws).
	LegacyWS = "graphql-ws"
)

// Close codes the server sends; docs/protocol.md says when.
const (
	CloseNormal                   = websocket.CloseNormalClosure
	CloseGoingAway                = websocket.CloseGoingAway
	CloseTryAgainLater            = websocket.CloseTryAgainLater
	CloseInvalidPayload           = websocket.CloseInvalidFramePayloadData // 1007: a text message that is not UTF-8
	CloseInvalidMessage           = 4400
	CloseUnauthorized             = 4401
	CloseForbidden                = 4403
	CloseSubprotocolNotAcceptable = 4406
	CloseInitTimeout              = 4408
	CloseSubscriberExists         = 4409
	CloseTooManyInitRequests      = 4429
	CloseInternalError            = 4500
)

// InitResult is what an InitFunc grants a connection.
type InitResult struct {
	// Context carries what the operations of the connection see (the
	// authenticated caller, typically). Nil keeps the connection's context.
	Context context.Context
	// Ack is the connection_ack payload; nil sends none.
	Ack map[string]any
	// Expires, when not zero, is when the grant ends: the connection is then
	// closed with 4403 (the client reconnects and initialises again).
	Expires time.Time
	// Session, when not empty, names what the grant came from (the
	// caller's session): Transport.EndSessions ends the grant early.
	Session string
	// Release, when set, is called once when the connection ends: it gives
	// back what Init reserved for the connection (a place in a count of
	// the caller's connections).
	Release func()
}

// InitFunc decides whether a connection_init is accepted, given its payload.
// A non-nil error refuses it: 4403 on graphql-transport-ws (1013 for a
// *TryAgainLater), connection_error and close on the legacy protocol. The
// error's message is shown to the client, so it must not carry internals.
type InitFunc func(ctx context.Context, payload map[string]any) (InitResult, error)

// TryAgainLater is an InitFunc's refusal for a passing reason (the caller
// holds too many connections): the connection is closed with 1013 and
// Reason (at most 123 bytes), which the standard clients retry with
// backoff, rather than with 4403, which says the token is no good.
type TryAgainLater struct{ Reason string }

func (e *TryAgainLater) Error() string { return e.Reason }

// Options configure a Transport. Zero values take the defaults.
type Options struct {
	// Panics recovers the panics of the transport's goroutines (see
	// panics.go): a panic ends only the operation it happened in (which
	// gets an INTERNAL error), or the connection (closed with 4500), or the
	// keepalive's round. Nil logs them to slog.Default.
	Panics *panics.Guard
	// Init authenticates connection_init; nil accepts every connection.
	Init InitFunc
	// CheckOrigin decides whether a browser's Origin may connect. Nil allows
	// only the server's own origin (and clients sending none).
	CheckOrigin func(r *http.Request) bool
	// InitTimeout is how long a connection may go without connection_init
	// before it is closed with 4408. Default 3s, as the reference server.
	InitTimeout time.Duration
	// KeepAlive is the interval of server keepalives: ping on
	// graphql-transport-ws, ka on the legacy protocol. A graphql-transport-ws
	// client that sends nothing (not even pong) for 1.4 intervals is
	// disconnected with 1001. Default 25s.
	KeepAlive time.Duration
	// WriteTimeout bounds one write to a client; a client that does not read
	// for that long is disconnected with 1013. Default 10s.
	WriteTimeout time.Duration
	// ReadLimit is the largest client message, in bytes; larger ones close the
	// connection with 1009. Default (0) 64 KiB; negative: no limit.
	ReadLimit int64
	// ReadBufferSize is the size of a connection's read buffer. Default 512
	// bytes; larger messages are read through it in pieces. (Frames are
	// written by write.go, with pooled buffers of its own.)
	ReadBufferSize int
	// ConnContext returns the base context of a connection (and of its
	// operations) from its upgrade request. Nil keeps the request's context,
	// without its cancellation; that holds on to the whole context chain of
	// the request for the connection's life, so a server with many idle
	// connections does better to copy the few values it needs.
	ConnContext func(r *http.Request) context.Context
	// OnError receives connection-level failures worth a log line.
	OnError func(ctx context.Context, err error)
	// OnOpen hears of each connection once it is upgraded and set up, under
	// its context (ConnContext's), with the subprotocol it speaks. OnClose
	// hears of the end of each connection OnOpen heard of, once, under the
	// same context, with the close code and whether the client closed it
	// (then the code is the client's).
	OnOpen  func(ctx context.Context, subprotocol string)
	OnClose func(ctx context.Context, code int, byClient bool)
	// OnRefused hears of each operation or connection a limit refuses,
	// under the operation's or the upgrade request's context, with the
	// limit's name as Stats.Refused counts it.
	OnRefused func(ctx context.Context, limit string)

	// Positions, when set, lets subscriptions share live delivery (see
	// group.go): it returns ctx under which a subscription resolver reports
	// the position of each event just before yielding it (sent), and the
	// position it has reached when it waits for new events (caughtUp); see
	// stream.WithPositionRecorder.
	Positions func(ctx context.Context, sent, caughtUp func(pos int64)) context.Context
	// EventTimes, when set alongside Positions, lets a group learn when each
	// event happened (record is called just before the event's position);
	// OnDelivered then receives, per shared event, the time from the event
	// to its frames being handed to every member's socket.
	EventTimes  func(ctx context.Context, record func(at time.Time)) context.Context
	OnDelivered func(time.Duration)
	// PublicFields names the subscription fields whose results are the same
	// for every caller, and may be shared between all of them.
	PublicFields []string
	// LatestFields names the subscription fields that are latest-value
	// streams (each result a complete new state). Their subscribers share
	// delivery as well when Versions is set, but a group of them hands a
	// member that joins only its newest result, and a newer result replaces
	// one still waiting for a slow member instead of queuing behind it: a
	// slow client skips intermediate states, never ends with a stale one,
	// and is never disconnected for a backlog.
	LatestFields []string
	// OpenFields names the public fields whose resolver authorizes nothing
	// (anyone may subscribe with any arguments): a plain subscription to one
	// (without its resume cursor) joins its group at once, without running
	// its resolver (see joinhead.go).
	OpenFields []string
	// Versions, when set, lets LatestFields subscriptions share delivery:
	// it returns ctx under which a subscription resolver reports the
	// version of each value just before yielding it (higher for newer
	// values); see live.WithVersionRecorder.
	Versions func(ctx context.Context, sent func(version int64)) context.Context
	// Scope names the caller of ctx for sharing the other subscription
	// fields: results are shared only between operations of one scope. Nil
	// shares nothing but PublicFields.
	Scope func(ctx context.Context) string
	// SpanningFields names subscription fields whose events (or, for a
	// latest-value field, new values) each belong to one scope or to all of
	// them, such as an inbox that receives broadcasts, or every user's
	// unread count: their subscribers (each with a scope) share one group
	// whatever their scope, when Audiences is set. Its leader's resolver runs
	// under the context Audiences returns, and then reports, just before each
	// event's position (or value's version), the scopes the event is for
	// (one call of record each; "" for every scope); the group executes and
	// encodes each event once and hands it only to the members of those
	// scopes, or to every member. A
	// result whose scope was not reported reaches nobody and ends the group
	// (its members get an error), so a resolver that ignores Audiences never
	// shares one scope's events with another. A subscriber runs privately, in
	// its own scope, until it has caught up with the group; a latest-value
	// field's versions must then grow over all scopes together.
	SpanningFields []string
	// StartAt, when set, returns ctx under which a durable stream without a
	// resume cursor starts after pos (see stream.WithStart): a group that
	// starts for a plain subscriber, which joined at pos, then misses
	// nothing committed between that and its start.
	StartAt func(ctx context.Context, pos int64) context.Context
	// MaxSpanningGroups bounds the distinct documents (by shape, see
	// shapeOf, with their variables) of SpanningFields that share groups
	// at once: each such group's leader
	// does the work of every scope, so a client that subscribes with many
	// made-up documents would otherwise multiply that work. A subscription
	// with one more runs on its own, as a subscription to a field of one
	// caller does, until fewer are in use; and so does one with a new key
	// from a caller that alone uses 4 keys already. Default 64.
	MaxSpanningGroups int
	// FollowingFields names durable subscription fields whose events follow
	// from other fields' (a room-list entry that a message moved): when
	// large fan-outs wait for their turn, theirs go after the other events',
	// with the latest values (see turns.go).
	FollowingFields []string
	// Followers names, for a durable subscription field, the fields whose
	// events follow from each of its events (a message moves the room-list
	// entry of everyone who sees its room). A large fan-out of the field's
	// event (one that takes a turn: see fanOut) waits, up to FollowWait,
	// for a fan-out of one of those fields to join its turn when their
	// groups hold at least half as many members as the event goes to: then
	// a subscriber of both gets both frames in one write, the event's
	// first, and the two fan-outs cost the writes of one, where the event
	// sent alone would have gone out a moment before the other was ready,
	// and most connections would have been written twice. A large fan-out
	// of a follower that comes first (no fan-out of the fields it follows
	// began within FollowWait) waits for one of theirs the same way.
	Followers map[string][]string
	// FollowWait bounds that wait. Default 50ms.
	FollowWait time.Duration
	Audiences  func(ctx context.Context, record func(scope string)) context.Context
	// MaxQueue is how many frames may wait for a slow client before it is
	// disconnected with 1013. Default 1024.
	MaxQueue int
	// SendBuffer, when positive, sets the kernel's send buffer of each
	// connection (SO_SNDBUF), bounding the memory a client that does not
	// read can hold in the kernel. Zero keeps the system's default.
	SendBuffer int
	// MaxOperations is how many operations one connection may run at once;
	// a subscribe beyond it gets a RATE_LIMITED error. Zero: no limit.
	MaxOperations int
	// Operations limits how fast one connection may start operations; one
	// over it gets a RATE_LIMITED error. Zero: no limit.
	Operations ratelimit.Limit
	// Admit, when set, is asked before each operation starts, once the
	// connection's own limits let it, with the connection's operation
	// context (the caller's, as Init set it). An error refuses the
	// operation with a RATE_LIMITED error saying the error's message (the
	// client sees it); the connection stays. It is how a limit across
	// connections (per user) is applied.
	Admit func(ctx context.Context) error
	// Compression offers permessage-deflate (RFC 7692, without context
	// takeover) to clients that ask for it. Messages of 256 bytes and more
	// are then sent to them compressed; a result shared by many
	// subscribers is compressed once for all (see deflate.go).
	Compression bool
	// MaxConnsPerAddr is how many connections one client address (the
	// request's RemoteAddr, which TRUSTED_PROXIES may have set from
	// X-Forwarded-For; an IPv6 address counts by its /64, see
	// request.AddrKey) may hold; the upgrade beyond it is refused with 429,
	// however many handshakes race. Zero: no limit.
	MaxConnsPerAddr int
}

// Transport is a graphql.Transport for WebSocket upgrades. Add it to the
// gqlgen handler before the HTTP transports: it claims every request with an
// Upgrade header.
type Transport struct {
	opts     Options
	upgrader websocket.Upgrader

	connsMu  sync.Mutex // guards the fields below, and each conn's session
	conns    map[*conn]struct{}
	perAddr  map[string]int       // open or opening connections by request.AddrKey of the client's address (see reserve)
	shutdown bool                 // Shutdown has begun: upgrades are refused
	ended    map[string]time.Time // sessions ended by EndSessions lately, and when

	keepalive *keepalive

	groupsMu sync.Mutex
	groups   map[string]*group  // the running groups by share key (Transport.shareKey)
	spanning map[string]spanUse // the share keys of SpanningFields in use, and who uses each
	// linkedGroups are the running groups of the fields that
	// Options.Followers names, as followed or following (see followWait).
	linkedGroups map[*group]struct{}
	fanOuts      turns // one turn of large fan-outs at a time (see fanOut)
	// led holds, for each field that Options.Followers gives followers,
	// when its last fan-out began (UnixNano; see followWait). Made by New,
	// only read after.
	led map[string]*atomic.Int64

	tails *tailCache // compressed results written to single connections

	// Counters for metrics.
	framesWritten atomic.Uint64
	slowConsumers atomic.Uint64
	statsMu       sync.Mutex
	closes        map[string]uint64 // by close code, or "client"
	refused       map[string]uint64 // by limit
	subs          map[string]int64  // running subscriptions by root field
}

// Stats are a Transport's counters since it started.
type Stats struct {
	FramesWritten uint64            // operation results handed to sockets (one per member of a shared event)
	Closes        map[string]uint64 // connections closed, by the server's close code, or "client" for those the client closed
	SlowConsumers uint64            // connections closed (1013) because the client did not read fast enough
	Refused       map[string]uint64 // operations or connections refused, by limit
	Subscriptions map[string]int64  // subscriptions running, by root field
}

// Stats returns the Transport's counters.
func (t *Transport) Stats() Stats {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return Stats{FramesWritten: t.framesWritten.Load(), SlowConsumers: t.slowConsumers.Load(), Closes: maps.Clone(t.closes), Refused: maps.Clone(t.refused), Subscriptions: maps.Clone(t.subs)}
}

// CountSubscription counts a subscription that another transport (GraphQL
// over Server-Sent Events) runs, of operation context rc, among the running
// subscriptions (Stats.Subscriptions) until done is called.
func (t *Transport) CountSubscription(rc *graphql.OperationContext) (done func()) {
	field := rootField(rc)
	t.countSubscription(field, 1)
	return sync.OnceFunc(func() { t.countSubscription(field, -1) })
}

// rootField names rc's root field, as subscriptions are counted.
func rootField(rc *graphql.OperationContext) string {
	if sel := rc.Operation.SelectionSet; len(sel) > 0 {
		if f, ok := sel[0].(*ast.Field); ok {
			return f.Name
		}
	}
	return "unknown"
}

// countSubscription adds delta to the running subscriptions of root field
// field.
func (t *Transport) countSubscription(field string, delta int64) {
	t.statsMu.Lock()
	t.subs[field] += delta
	t.statsMu.Unlock()
}

// countClose counts a closed connection under label: the server's close
// code, or closedByClient.
func (t *Transport) countClose(label string) {
	t.statsMu.Lock()
	t.closes[label]++
	t.statsMu.Unlock()
}

// refuse counts an operation or connection refused by limit, and reports
// it to Options.OnRefused under ctx.
func (t *Transport) refuse(ctx context.Context, limit string) {
	t.statsMu.Lock()
	t.refused[limit]++
	t.statsMu.Unlock()
	t.opts.OnRefused(ctx, limit)
}

var _ graphql.Transport = (*Transport)(nil)

// New returns a Transport configured by opts. Call Shutdown to close its
// connections and stop its keepalive timer.
func New(opts Options) *Transport {
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = 3 * time.Second
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 25 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.ReadLimit == 0 {
		opts.ReadLimit = 64 << 10
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 512
	}
	if opts.CheckOrigin == nil {
		opts.CheckOrigin = sameOrigin
	}
	if opts.MaxSpanningGroups <= 0 {
		opts.MaxSpanningGroups = 64
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 1024
	}
	if opts.FollowWait <= 0 {
		opts.FollowWait = 50 * time.Millisecond
	}
	if opts.Init == nil {
		opts.Init = func(context.Context, map[string]any) (InitResult, error) { return InitResult{}, nil }
	}
	if opts.OnError == nil {
		opts.OnError = func(context.Context, error) {}
	}
	if opts.OnOpen == nil {
		opts.OnOpen = func(context.Context, string) {}
	}
	if opts.OnClose == nil {
		opts.OnClose = func(context.Context, int, bool) {}
	}
	if opts.OnRefused == nil {
		opts.OnRefused = func(context.Context, string) {}
	}
	t := &Transport{
		opts:         opts,
		conns:        make(map[*conn]struct{}),
		perAddr:      make(map[string]int),
		ended:        make(map[string]time.Time),
		closes:       make(map[string]uint64),
		refused:      make(map[string]uint64),
		subs:         make(map[string]int64),
		groups:       make(map[string]*group),
		spanning:     make(map[string]spanUse),
		linkedGroups: make(map[*group]struct{}),
		tails:        newTailCache(),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   opts.ReadBufferSize,
			// Only gorilla's own control frames would use a write buffer
			// (write.go frames everything else); a pool keeps it from
			// holding one per connection.
			WriteBufferPool: &sync.Pool{},
			// gorilla negotiates; the frames are compressed here (the
			// writes are this package's).
			EnableCompression: opts.Compression,
			// Do checks the origin itself, to answer 403.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	t.keepalive = newKeepalive(t, opts.KeepAlive)
	t.led = make(map[string]*atomic.Int64, len(opts.Followers))
	for field := range opts.Followers {
		t.led[field] = new(atomic.Int64)
	}
	return t
}

// Supports claims WebSocket upgrade requests.
func (t *Transport) Supports(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// ErrShuttingDown refuses upgrades once Shutdown has begun.
var ErrShuttingDown = errors.New("gqlws: server shutting down")

// Do upgrades the request and serves the connection. It returns as soon as
// the connection is set up, so that net/http's per-request buffers are freed;
// the connection lives on in its own read goroutine.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if !t.opts.CheckOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	addr := request.AddrKey(clientHost(r))
	switch t.reserve(addr) {
	case ErrShuttingDown:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	case errAddrFull:
		t.refuse(r.Context(), "connections_per_address")
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many connections from this address", http.StatusTooManyRequests)
		return
	}
	registered := false // until then, the place reserve took is given back on return
	defer func() {
		if !registered {
			t.release(addr)
		}
	}()
	offered := websocket.Subprotocols(r)
	proto := chooseSubprotocol(offered)
	header := http.Header{}
	if proto != "" && slices.Contains(offered, proto) {
		header.Set("Sec-WebSocket-Protocol", proto)
	}
	hj := &hijacker{ResponseWriter: w}
	ws, err := t.upgrader.Upgrade(hj, r, header)
	if err != nil {
		return // the upgrader has answered the request
	}
	ws.SetReadLimit(max(t.opts.ReadLimit, 0)) // negative: no limit
	if tcp, ok := hj.socket.Conn.(*net.TCPConn); ok && t.opts.SendBuffer > 0 {
		_ = tcp.SetWriteBuffer(t.opts.SendBuffer)
	}
	if proto == "" {
		// Only unknown subprotocols were offered: the reference server's
		// answer is to accept the socket and close it with 4406.
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(CloseSubprotocolNotAcceptable, "Subprotocol not acceptable"),
			time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	c := newConn(t, ws, hj.socket, protocolNamed(proto), exec)
	c.addr = addr
	base := r.Context()
	if t.opts.ConnContext != nil {
		base = t.opts.ConnContext(r)
	}
	ctx := c.setup(base)
	t.opts.OnOpen(ctx, proto)
	t.connsMu.Lock()
	if t.shutdown {
		t.connsMu.Unlock()
		c.close(CloseGoingAway, "server shutting down")
		return
	}
	t.conns[c] = struct{}{} // its place is forget's to give back now
	registered = true
	t.connsMu.Unlock()
	go c.serve(ctx)
}

// chooseSubprotocol picks the protocol for the offered subprotocols:
// graphql-transport-ws when offered, else graphql-ws; no offer at all means
// the legacy protocol (old Apollo clients send none). Only unknown offers
// give "".
func chooseSubprotocol(offered []string) string {
	switch {
	case slices.Contains(offered, TransportWS):
		return TransportWS
	case slices.Contains(offered, LegacyWS), len(offered) == 0:
		return LegacyWS
	default:
		return ""
	}
}

// sameOrigin allows requests without an Origin header and those whose Origin
// names the requested host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// Len reports how many connections are open.
func (t *Transport) Len() int {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	return len(t.conns)
}

// Compressed reports how many open connections negotiated
// permessage-deflate.
func (t *Transport) Compressed() int {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	n := 0
	for c := range t.conns {
		if c.socket.deflate {
			n++
		}
	}
	return n
}

// forget drops a closed connection from the open ones, once; its address
// may then hold one more.
func (t *Transport) forget(c *conn) {
	t.connsMu.Lock()
	if _, ok := t.conns[c]; ok {
		delete(t.conns, c)
		t.releaseLocked(c.addr)
	}
	t.connsMu.Unlock()
}

// snapshot returns the open connections.
func (t *Transport) snapshot() []*conn {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	out := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		out = append(out, c)
	}
	return out
}

// Shutdown refuses new connections, closes every open one with 1001 (the
// standard client reconnects, to another replica or to this one restarted)
// and stops the keepalive timer.
func (t *Transport) Shutdown() {
	t.connsMu.Lock()
	t.shutdown = true
	t.connsMu.Unlock()
	t.keepalive.stop()
	for _, c := range t.snapshot() {
		c.close(CloseGoingAway, "server shutting down")
	}
}

// endedMemory is how long EndSessions remembers an ended session, to refuse
// a connection_init whose grant was decided just before the session ended
// and arrives after the connections were closed.
const endedMemory = time.Minute

// errSessionEnded refuses a connection_init whose session ended meanwhile.
var errSessionEnded = errors.New("session ended: sign in again")

// EndSessions closes every connection granted by one of sessions (see
// InitResult.Session) with 4403 "Session ended" (the standard client
// reconnects, and its connection_init is refused unless it brings a token
// of another session), and for a minute refuses a connection_init granted
// by one of them. It returns how many connections it closes.
func (t *Transport) EndSessions(sessions ...string) int {
	now := time.Now()
	set := make(map[string]struct{}, len(sessions))
	var doomed []*conn
	t.connsMu.Lock()
	for s, at := range t.ended {
		if now.Sub(at) > endedMemory {
			delete(t.ended, s)
		}
	}
	for _, s := range sessions {
		t.ended[s] = now
		set[s] = struct{}{}
	}
	for c := range t.conns {
		if _, ok := set[c.session]; ok && c.session != "" {
			doomed = append(doomed, c)
		}
	}
	t.connsMu.Unlock()
	for _, c := range doomed {
		c.closeLater(CloseForbidden, "Session ended")
	}
	return len(doomed)
}

// claimSession records that c's grant came from session, unless
// EndSessions ended that session lately; it reports whether it did.
func (t *Transport) claimSession(c *conn, session string) bool {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	if at, ok := t.ended[session]; ok && time.Since(at) <= endedMemory {
		return false
	}
	c.session = session
	return true
}
