// Package app is Switchboard's composition root: the configuration
// (ParseConfig, the only reader of the environment), the wiring of the
// database, the broker and the live services, the HTTP routes and their
// middleware, the metrics, and the token subcommand. The binary's main
// package only parses and calls it; tests and other programs start a whole
// server in-process with Start.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/switchboardhq/switchboard/accounts"
	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/gqlws"
	"github.com/switchboardhq/switchboard/kpi"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/ratelimit/redisrate"
	"github.com/switchboardhq/switchboard/resolvers"
	"github.com/switchboardhq/switchboard/statuses"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// guestTokenTTL is how long a guest sign-in lasts.
const guestTokenTTL = 30 * 24 * time.Hour

// Server is one running Switchboard: its database, broker, live services and
// HTTP listener (and /metrics' own with METRICS_ADDR), wired together. Start
// returns one that serves; Shutdown stops it.
type Server struct {
	cfg      *Config
	log      *slog.Logger
	metrics  *metrics
	panics   *panics.Guard // recovers the panics of every goroutine the server starts
	url      string
	http     *http.Server
	ws       *gqlws.Transport
	sse      *graphQLOverSSE
	draining atomic.Bool        // /readyz fails from the start of a shutdown
	stop     context.CancelFunc // ends the services' background work
	closers  []func()           // what Start opened, closed in reverse by close
	served   chan error         // the HTTP servers' ends
	once     sync.Once
}

// Run starts a server (see Start) and serves until ctx ends or the listener
// fails, then shuts it down gracefully (see Shutdown).
func Run(ctx context.Context, cfg *Config, logOutput io.Writer) error {
	s, err := Start(ctx, cfg, logOutput)
	if err != nil {
		return err
	}
	select {
	case err := <-s.served:
		_ = s.http.Close() // when the metrics listener failed
		s.close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return s.Shutdown(context.WithoutCancel(ctx))
}

// Start opens and migrates the database, connects the broker, starts the
// live services and serves HTTP on cfg.Addr, logging to logOutput. It
// returns once the listener accepts connections (see URL); ctx bounds only
// the start. A broker that is down is not fatal: the server runs degraded
// (live delivery from the database) until it is back.
func Start(ctx context.Context, cfg *Config, logOutput io.Writer) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: newLogger(cfg, logOutput), metrics: newMetrics(), served: make(chan error, 2)}
	s.panics = &panics.Guard{Log: s.log, Count: s.metrics.countPanic, Inject: cfg.InjectPanic}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{Timeout: cfg.DBTimeout, Log: s.log})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		return nil, err
	}
	broker, rc, brokerName, err := s.openBroker(ctx, db)
	if err != nil {
		return nil, err
	}
	// Every token's session is checked; sessions that end close their
	// WebSockets here, wherever they were ended.
	sessions := accounts.NewSessions(db, broker, accounts.SessionsOptions{
		Ended: func(ids []string) { s.ws.EndSessions(ids...); s.sse.EndSessions(ids...) }, Log: s.log, Panics: s.panics,
	})
	tokens, err := newTokens(ctx, cfg, db)
	if err != nil {
		return nil, err
	}
	tokens = tokens.WithSessions(sessions)
	svc := s.startServices(db, tokens, sessions, broker, rc)
	s.ws = newWebsocket(cfg, s.log, tokens, svc, s.metrics)
	s.closers = append(s.closers, s.ws.Shutdown)
	s.sse = newGraphQLOverSSE(s.log, s.ws, svc.userConns, cfg.WSKeepAlive, cfg.WSCompression, s.panics)
	s.closers = append(s.closers, s.sse.Shutdown)
	ln, err := s.listen()
	if err != nil {
		return nil, err
	}
	if err := s.serveMetrics(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	s.http = &http.Server{
		Handler:           newHandler(cfg, s.log, svc, tokens, s.ws, s.sse, broker, s.metrics, &s.draining),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "url", s.url,
		"database", string(db.Dialect()), "data", dataLocation(cfg), "broker", brokerName, "version", cfg.Version)
	go func() { s.served <- s.http.Serve(ln) }()
	return s, nil
}

// serveMetrics, with METRICS_ADDR set, serves /metrics there (and nothing
// else) until the server closes; the main listener then does not serve
// them.
func (s *Server) serveMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on METRICS_ADDR %s: %w", s.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler())
	srv := &http.Server{Handler: recoverHTTP(s.panics, mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	s.closers = append(s.closers, func() { _ = srv.Close() }) // a scrape has nothing to finish
	s.log.Info("serving metrics", "addr", ln.Addr().String(), "url", "http://"+displayAddr(ln.Addr())+"/metrics")
	go func() {
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			s.served <- fmt.Errorf("metrics: %w", err)
		}
	}()
	return nil
}

// URL is where the server listens, as a browser would open it
// (http://localhost:8080, https://… with TLS).
func (s *Server) URL() string { return s.url }

// Shutdown stops the server gracefully: readiness fails at once, WebSocket
// clients are closed with 1001 (they reconnect elsewhere and resume), HTTP
// requests in flight get up to SHUTDOWN_TIMEOUT to finish (or until ctx
// ends), and then the services, the broker and the database close. Only the
// first call has an effect.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.log.Info("shutting down")
		s.draining.Store(true)
		s.ws.Shutdown()
		s.sse.Shutdown() // event streams end; their clients come back and resume
		ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
		defer cancel()
		if err = s.http.Shutdown(ctx); err != nil {
			s.log.Warn("shutdown did not finish in time", "err", err)
			err = nil // what was in flight is cut off; the rest stops as usual
		}
		s.close()
		s.log.Info("stopped")
	})
	return err
}

// close ends the background work and closes what Start opened, newest
// first.
func (s *Server) close() {
	if s.stop != nil {
		s.stop()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// services are what startServices built: the resolvers over the live
// services, and what the health checks, the routes and the metrics read
// besides (the database, the per-user and per-address limits).
type services struct {
	res                                           *resolvers.Resolver
	db                                            *store.DB
	messageRate, typingRate, statusRate, roomRate *ratelimit.Keyed
	requestRate, signInRate                       *ratelimit.Keyed // LIMIT_REQUESTS, LIMIT_SIGNINS
	userConns                                     *userConns       // LIMIT_CONNS_PER_USER
	panics                                        *panics.Guard    // the server's (Server.panics)
	// persisted is the automatic persisted queries' registry: the local
	// cache (persistedLocal), shared through Redis when there is one.
	persisted      graphql.Cache[string]
	persistedLocal *byteLRU[string]
}

// startServices starts sessions (the check of every token's session and
// the news of sessions ended elsewhere) and the account, status, chat,
// notification and KPI services with their rate limits, and returns them
// with the resolvers over them. Their background work lasts until the
// server closes. With Redis (rc not nil) the per-user rate limits are kept
// there, shared by every replica.
func (s *Server) startServices(db *store.DB, tokens *auth.Tokens, sessions *accounts.Sessions, broker pubsub.Broker, rc *redisConn) *services {
	cfg, log := s.cfg, s.log
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	svc := &services{
		db:          db,
		panics:      s.panics,
		messageRate: ratelimit.NewKeyed(burstOf(cfg.MessagesPerSec), nil),
		typingRate:  ratelimit.NewKeyed(burstOf(cfg.TypingPerSecond), nil),
		statusRate:  ratelimit.NewKeyed(burstOf(cfg.StatusesPerSec), nil),
		requestRate: ratelimit.NewKeyed(burstOf(cfg.RequestsPerSec), nil),
		// LIMIT_SIGNINS is per minute, in bursts of that many.
		signInRate: ratelimit.NewKeyed(ratelimit.Limit{PerSecond: cfg.SignInsPerMin / 60, Burst: max(1, int(cfg.SignInsPerMin))}, nil),
		userConns:  newUserConns(cfg.ConnsPerUser),
		roomRate:   ratelimit.NewKeyed(perHour(cfg.RoomsPerHour), nil),
	}
	svc.persistedLocal = newPersistedCache()
	svc.persisted = svc.persistedLocal

	sessions.Start(ctx)
	s.closers = append(s.closers, sessions.Close)
	guard := s.panics
	statusFeed := statuses.New(db, broker, statuses.Options{RateLimit: svc.statusRate, Log: log, Stream: stream.Options{Panics: guard}})
	s.closers = append(s.closers, statusFeed.Close)
	rooms := chat.New(db, broker, chat.Options{MessageRate: svc.messageRate, TypingRate: svc.typingRate, RoomRate: svc.roomRate, Log: log, Panics: guard})
	rooms.Start(ctx)
	s.closers = append(s.closers, rooms.Close)
	inbox := notify.New(db, broker, notify.Options{Log: log, Panics: guard})
	inbox.Start(ctx)
	s.closers = append(s.closers, inbox.Close)
	kpis := kpi.New(db, broker, kpi.Options{DashboardInterval: cfg.DashboardInterval, Retention: cfg.KPIRetention, Log: log, Panics: guard})
	kpis.Start(ctx)
	s.closers = append(s.closers, kpis.Close)
	if cfg.DemoFeed {
		kpis.StartDemo(ctx, cfg.DemoFeedInterval)
	}
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		pruneIdempotencyKeys(ctx, db, log, guard, time.Now, pruneKeysEvery)
	}()
	s.closers = append(s.closers, func() { <-pruned })
	svc.res = &resolvers.Resolver{
		Accounts: accounts.New(db, tokens, sessions, accounts.Options{GuestSignIn: cfg.GuestSignIn, TokenTTL: guestTokenTTL, SessionMaxAge: cfg.SessionMaxAge, SignInRate: svc.signInRate}),
		Statuses: statusFeed, Chat: rooms, KPIs: kpis, Notifications: inbox,
		KPIPublic: cfg.KPIPublic, Panics: guard,
	}
	if rc != nil {
		// With Redis, the per-user limits are shared by every replica.
		// Under the broker's circuit: while Redis is known to be down, each
		// decision is local at once instead of waiting for Redis.
		shared := guardedShared{rc.breaker, redisrate.New(rc.client, rc.prefix)}
		failed := s.redisFailure("rate_limit", "shared rate limit unavailable; limiting locally")
		svc.messageRate.Share(shared, "messages", failed)
		svc.typingRate.Share(shared, "typing", failed)
		svc.statusRate.Share(shared, "statuses", failed)
		svc.requestRate.Share(shared, "requests", failed)
		svc.signInRate.Share(shared, "signins", failed)
		svc.roomRate.Share(shared, "rooms", failed)
		// Every replica knows the persisted queries any of them learned.
		svc.persisted = &sharedPersisted{local: svc.persistedLocal, client: rc.client, prefix: rc.prefix + "apq:", breaker: rc.breaker,
			failed: s.redisFailure("persisted_query", "shared persisted queries unavailable; using this replica's")}
	}
	return svc
}

// redisFailure returns what counts a failure of op on Redis (skipped while
// the circuit is open, else an error, logged at debug with msg).
func (s *Server) redisFailure(op, msg string) func(err error) {
	return func(err error) {
		if errors.Is(err, pubsub.ErrBrokerDown) {
			s.metrics.brokerSkipped.WithLabelValues(op).Inc()
			return
		}
		s.metrics.brokerErrors.WithLabelValues(op).Inc()
		s.log.Debug(msg, "err", err)
	}
}

// openBroker returns the broker, counted for the metrics, and its name for
// the log: with REDIS_URL set, the Redis broker on the process's one Redis
// client behind a circuit breaker (see newBreaker), with the client and the
// breaker also returned for the other users of that Redis; else the
// in-process broker and a nil connection. The client closes after the
// broker.
func (s *Server) openBroker(ctx context.Context, db *store.DB) (pubsub.Broker, *redisConn, string, error) {
	if s.cfg.RedisURL == "" {
		b := mempubsub.New(0)
		s.closers = append(s.closers, func() { _ = b.Close() })
		return countingBroker{b, s.metrics}, nil, "in-process", nil
	}
	b, rc, err := openRedisBroker(ctx, s.cfg.RedisURL, db, s.panics)
	if err != nil {
		return nil, nil, "", err
	}
	rc.breaker = s.newBreaker(b)
	s.closers = append(s.closers, func() { _ = rc.client.Close() }, func() { _ = rc.breaker.Close() }) // closers run newest first
	if err := rc.breaker.Ping(ctx); err != nil {
		s.log.Warn("redis is not reachable; running degraded until it is", "err", err)
	}
	return countingBroker{rc.breaker, s.metrics}, rc, "redis", nil
}

// listen opens the listener on ADDR, with TLS when a certificate is
// configured, and sets the server's URL.
func (s *Server) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.url = "http://" + displayAddr(ln.Addr())
	if s.cfg.TLSCertFile == "" {
		return ln, nil
	}
	// HTTPS and WSS directly. Clients may negotiate HTTP/2 (h2), where one
	// connection carries any number of event streams (a browser opens at
	// most six HTTP/1.1 connections to a host); WebSocket clients ask for
	// HTTP/1.1, which their upgrade needs, and get it.
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	s.url = "https://" + displayAddr(ln.Addr())
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}), nil
}

// newTokens returns the token signer: AUTH_SECRET when set, else the key kept
// in the database (generated on first start).
func newTokens(ctx context.Context, cfg *Config, db *store.DB) (*auth.Tokens, error) {
	key := cfg.AuthSecret
	if key == nil {
		var err error
		if key, err = db.AuthSecret(ctx); err != nil {
			return nil, err
		}
	}
	return auth.NewTokens(key, nil)
}

// displayAddr turns a listener's address into one a browser can open.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// dataLocation says where the data lives, without credentials.
func dataLocation(cfg *Config) string {
	if u, err := urlRedacted(cfg.DatabaseURL); err == nil {
		return u
	}
	return "(unparsable DATABASE_URL)"
}
