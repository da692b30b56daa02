package app

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/graph"
	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/request"
	"github.com/switchboardhq/switchboard/resolvers"
	"github.com/switchboardhq/switchboard/stream"
	"github.com/switchboardhq/switchboard/web"
)

// initTimeout is how long a WebSocket may go without connection_init.
const initTimeout = 3 * time.Second

// readyTimeout bounds /readyz's check of the database (under DB_TIMEOUT
// when that is shorter): a load balancer's probe gets its answer, 503 for
// a database that hangs, before it gives up by itself (commonly after 1 to
// 5 s).
const readyTimeout = time.Second

// initRefusal is how connection_init refuses a token ConnectionInit did
// not accept: a session that cannot be checked now (the database did not
// answer) is a *gqlws.TryAgainLater, 1013, which clients retry with
// backoff; 4403 would tell them that the token is no good, and the web page
// would forget its session.
func initRefusal(err error) error {
	if e, ok := models.CodedError(err); ok && e.Code == models.Unavailable {
		return &gqlws.TryAgainLater{Reason: e.Message}
	}
	return err
}

// newWebsocket builds the WebSocket transport: tokens from connection_init,
// the allowed origins, the limits above and svc's limits per caller.
func newWebsocket(cfg *Config, log *slog.Logger, tokens *auth.Tokens, svc *services, m *metrics) *gqlws.Transport {
	return gqlws.New(gqlws.Options{
		Panics: svc.panics,
		Init: func(ctx context.Context, payload map[string]any) (gqlws.InitResult, error) {
			ctx, p, err := tokens.ConnectionInit(ctx, payload)
			if err != nil {
				wsLog{log}.authRefused(ctx, err)
				return gqlws.InitResult{}, initRefusal(err)
			}
			release, err := svc.userConns.hold(p) // LIMIT_CONNS_PER_USER
			if err != nil {
				log.DebugContext(ctx, "rate limited", "limit", "connections_per_user", "user", p.User.ID, "client", request.ClientAddr(ctx))
				return gqlws.InitResult{}, err
			}
			// The welcome: who the connection is signed in as, and the version.
			ack := map[string]any{"user": nil, "version": cfg.Version}
			res := gqlws.InitResult{Context: ctx, Ack: ack}
			if p != nil {
				ack["user"] = map[string]any{"id": strconv.FormatInt(p.User.ID, 10), "name": p.User.Name}
				// The token's expiry and its session's end close the connection.
				res.Expires, res.Session = p.ExpiresAt, p.SessionID
			}
			res.Release = release
			return res, nil
		},
		CheckOrigin: originChecker(cfg.AllowedOrigins),
		// A connection keeps only its request id and client address from the
		// upgrade request.
		ConnContext: func(r *http.Request) context.Context { return request.Detached(r.Context()) },
		// Live delivery of durable streams, and of the latest-value streams
		// (presence, the KPI sets, the dashboard), is shared between
		// subscribers of the same document and scope. The public fields'
		// results reach no field that depends on the caller (a message and
		// its author, a presence list, a KPI set); each subscriber's own
		// resolver checks that it may see them before it joins, except for
		// the open statusPosted, whose plain subscriptions join their group
		// without running their resolver.
		Positions:    stream.WithPositionRecorder,
		EventTimes:   stream.WithEventTimeRecorder,
		Versions:     live.WithVersionRecorder,
		OnDelivered:  func(d time.Duration) { m.deliveryLatency.Observe(d.Seconds()) },
		PublicFields: []string{"statusPosted", "messageAdded", "presence", "kpiUpdated", "dashboard"},
		LatestFields: []string{"presence", "kpiUpdated", "dashboard", "unreadCount"},
		OpenFields:   []string{"statusPosted"},
		// One group serves every inbox: a broadcast is executed and encoded
		// once for all its watchers, a user's own notification (or new
		// unread count) for that user's tabs only; and one serves every room
		// list, a room's change once per distinct view of it.
		SpanningFields: []string{"notificationAdded", "unreadCount", "roomsChanged"},
		// A message's frame goes before the room-list entries it moves, and
		// in the same write to a member who follows both: its fan-out
		// waits for theirs (50 ms at most), and theirs for it when they are
		// ready first.
		FollowingFields: []string{"roomsChanged"},
		Followers:       map[string][]string{"messageAdded": {"roomsChanged"}},
		FollowWait:      cfg.FollowWait,
		Audiences:       stream.WithAudienceRecorder,
		StartAt:         stream.WithStart,
		Scope: func(ctx context.Context) string {
			if p, ok := auth.PrincipalFrom(ctx); ok {
				return strconv.FormatInt(p.User.ID, 10)
			}
			return ""
		},
		InitTimeout:     initTimeout,
		MaxOperations:   cfg.SubsPerConn,
		Operations:      burstOf(cfg.OpsPerSecond),
		Admit:           admitOperation(svc.requestRate, log), // LIMIT_REQUESTS
		MaxConnsPerAddr: cfg.ConnsPerAddr,
		KeepAlive:       cfg.WSKeepAlive,
		Compression:     cfg.WSCompression,
		ReadLimit:       cmp.Or(cfg.MaxWSMessage, -1), // 0 in the configuration: no limit
		OnError: func(ctx context.Context, err error) {
			log.DebugContext(ctx, "websocket", "client", request.ClientAddr(ctx), "err", err)
		},
		OnOpen: wsLog{log}.opened, OnClose: wsLog{log}.closed, OnRefused: wsLog{log}.refused,
	})
}

// burstOf is a limit of perSecond with bursts of twice that (at least 1).
func burstOf(perSecond float64) ratelimit.Limit {
	return ratelimit.Limit{PerSecond: perSecond, Burst: max(1, int(2*perSecond))}
}

// perHour is a limit of n an hour with bursts of n (at least 1).
func perHour(n float64) ratelimit.Limit {
	return ratelimit.Limit{PerSecond: n / 3600, Burst: max(1, int(n))}
}

// newHandler builds the HTTP routes: the GraphQL endpoint, the playground
// (with PLAYGROUND), the SDL, health, metrics (without METRICS_ADDR) and the
// web page.
func newHandler(cfg *Config, log *slog.Logger, svc *services, tokens *auth.Tokens, ws *gqlws.Transport, sse *graphQLOverSSE, broker pubsub.Broker, m *metrics, draining *atomic.Bool) http.Handler {
	schema := graph.NewExecutableSchema(graph.Config{Resolvers: svc.res})
	gql := handler.New(schema)
	// WebSocket first: it claims every request with an Upgrade header.
	gql.AddTransport(ws)
	gql.AddTransport(transport.Options{})
	gql.AddTransport(sse)                  // GET and POST accepting text/event-stream: graphql-sse
	gql.AddTransport(graphQLOverHTTP{log}) // GET and POST, refusing client mistakes with 4xx and a code
	// Both caches are bounded in bytes; a document enters them only once it
	// has parsed and validated.
	parsed := newParsedCache()
	gql.SetQueryCache(parsed)
	gql.SetParserTokenLimit(cfg.QueryLimits.Tokens)
	// "Did you mean …?" suggestions would map the schema for a caller who
	// may not introspect it.
	gql.SetValidationRulesFn(func() *rules.Rules { return queryRules(cfg.Introspection, !cfg.Production(), cfg.QueryLimits) })
	gql.SetDisableSuggestion(cfg.Production())
	// Introspection follows INTROSPECTION (off by default in production);
	// /schema.graphql below serves the SDL either way, for codegen.
	if cfg.Introspection {
		gql.Use(extension.Introspection{})
	}
	gql.Use(persistedQueries{svc.persisted})
	gql.Use(documentBounds{tokens: cfg.QueryLimits.Tokens, parsed: parsed}) // after the document is known
	gql.Use(complexityLimit{cfg.QueryLimits.Complexity})
	gql.Use(errorCap{})
	gql.SetErrorPresenter(m.countErrors(resolvers.ErrorPresenter(log)))
	gql.SetRecoverFunc(resolvers.Recover(svc.panics))

	gql.Use(&operationTimer{m.operations})
	m.observe(ws, sse, svc)
	m.register(cacheCollector{"parsed": parsed, "persisted": svc.persistedLocal})

	mux := http.NewServeMux()
	mux.Handle("/graphql", cors(cfg.AllowedOrigins, logRefusals(log, withBodyLimit(cfg.MaxHTTPBody, log, tokens.Middleware(limitRequests(svc.requestRate, log, gql))))))
	if cfg.Playground {
		pg := web.Playground(web.Options{AllowedOrigins: cfg.AllowedOrigins})
		mux.Handle("GET /playground", pg)
		mux.Handle("GET /playground/", pg)
	}
	sdl := schemaSource(schema.Schema())
	mux.HandleFunc("GET /schema.graphql", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/graphql; charset=utf-8")
		_, _ = io.WriteString(w, sdl)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": cfg.Version})
	})
	readiness := func(ctx context.Context) (int, map[string]string) {
		if draining.Load() {
			return http.StatusServiceUnavailable, map[string]string{"status": "shutting down"}
		}
		ping, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := svc.db.Ping(ping); err != nil {
			log.WarnContext(ctx, "not ready", "err", err)
			return http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "down"}
		}
		// A broker outage degrades live delivery (it falls back to the
		// database) but every request is still served: report it, stay in
		// rotation.
		if err := broker.Ping(ctx); err != nil {
			log.WarnContext(ctx, "degraded", "broker", "down", "err", err)
			return http.StatusOK, map[string]string{"status": "degraded", "database": "up", "broker": "down"}
		}
		return http.StatusOK, map[string]string{"status": "ready", "database": "up", "broker": "up"}
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		code, body := readiness(r.Context())
		writeJSON(w, code, body)
	})
	m.observeReadiness(func() bool {
		code, _ := readiness(context.Background())
		return code == http.StatusOK
	})
	if cfg.MetricsAddr == "" { // else only its own listener serves them (see Start)
		mux.Handle("GET /metrics", m.handler())
	}
	mux.Handle("/", web.Handler(web.Options{AllowedOrigins: cfg.AllowedOrigins}))
	return request.ResolveClient(cfg.TrustedProxies, request.AssignID(recoverHTTP(svc.panics, mux)))
}

// recoverHTTP recovers a panic of an HTTP request's handling outside the
// resolvers (whose panics gqlgen recovers): it is reported by guard
// (where="http") and the request answered 500, if nothing was written yet.
// http.ErrAbortHandler goes on up, as net/http means it to.
func recoverHTTP(guard *panics.Guard, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			guard.Report(r.Context(), "http", p)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}()
		guard.Point("http")
		next.ServeHTTP(w, r)
	})
}

// schemaSource is the SDL the schema was generated from, verbatim (with its
// doc strings and comments): the text of every source file its types come
// from, in the order of the files' names.
func schemaSource(schema *ast.Schema) string {
	files := map[string]string{}
	for _, def := range schema.Types {
		if !def.BuiltIn && def.Position != nil && def.Position.Src != nil {
			files[def.Position.Src.Name] = def.Position.Src.Input
		}
	}
	var sdl strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		sdl.WriteString(files[name])
	}
	return sdl.String()
}

// originAllowed reports whether a browser on origin may use the API: its own
// origin always, others when listed (or when the list holds "*").
func originAllowed(allowed []string, origin, host string) bool {
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	return slices.Contains(allowed, "*") || slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, origin) })
}

// originChecker is the WebSocket upgrade's origin check (against cross-site
// WebSocket hijacking).
func originChecker(allowed []string) func(r *http.Request) bool {
	return func(r *http.Request) bool { return originAllowed(allowed, r.Header.Get("Origin"), r.Host) }
}

// cors answers CORS requests from allowed origins, preflight included (it
// grants the request headers corsAllowHeaders says).
func cors(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !isWebSocketUpgrade(r) && originAllowed(allowed, origin, r.Host) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", "X-Request-ID")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders(r.Header.Get("Access-Control-Request-Headers")))
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// urlRedacted is a DATABASE_URL without its password.
func urlRedacted(raw string) (string, error) {
	if strings.HasPrefix(raw, "sqlite:") {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	return u.Redacted(), nil
}

// isWebSocketUpgrade reports whether r asks to become a WebSocket (the
// requests the WebSocket transport claims); any other Upgrade header is an
// ordinary HTTP request.
func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
