// Switchboard is a realtime GraphQL API server: queries and mutations over
// HTTP, live subscriptions over WebSocket, one binary.
//
// Usage:
//
//	switchboard [flags]                                    serve (see --help)
//	switchboard token --name NAME [--role ROLE] [--ttl D]  mint a token
//
// Configuration comes from flags and environment variables (see config.go
// and the README).
package main

//go:generate go run github.com/99designs/gqlgen generate --config gqlgen.yml

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/kpi"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/ratelimit/redisrate"
	"github.com/switchboardhq/switchboard/resolvers"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// schemaSDL is the API contract, served at /schema.graphql.
//
//go:embed schema.graphqls
var schemaSDL []byte

// version is the server's version, set at build time with
// -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

// guestTokenTTL is how long a guest sign-in lasts.
const guestTokenTTL = 30 * 24 * time.Hour

// demoFeedInterval is how often the KPI demo feed moves its values.
const demoFeedInterval = 5 * time.Second

// run starts the server (or a subcommand) and returns when ctx ends and the
// server has shut down, or when it cannot start. It writes logs to stdout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(ctx, args[1:], getenv, stdout)
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		_, err := fmt.Fprintln(stdout, "switchboard", version)
		return err
	}
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := slog.New(resolvers.LogHandler(newLogger(cfg, stdout).Handler()))

	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	tokens, err := newTokens(ctx, cfg, db)
	if err != nil {
		return err
	}

	rawBroker, brokerName, err := newBroker(ctx, cfg, db, log)
	if err != nil {
		return err
	}
	broker := countingBroker{rawBroker}
	defer broker.Close()
	statuses := stream.New(db.StatusLog(), broker, func(s *models.Status) int64 { return s.ID }, stream.Options{Log: log})
	defer statuses.Close()
	messages := stream.New(db.MessageLog(), broker, func(m *models.Message) int64 { return m.Seq }, stream.Options{Log: log})
	defer messages.Close()
	chatState := chat.NewHub(broker, 0, chat.DefaultLeaveGrace, log)
	chatState.Start(ctx)
	defer chatState.Close()
	notifications := stream.New(db.NotificationLog(), broker, func(n *models.Notification) int64 { return n.ID }, stream.Options{Log: log})
	defer notifications.Close()
	inbox := notify.New(db, notifications, broker, nil, log)
	inbox.Start(ctx)
	defer inbox.Close()
	kpis := kpi.New(db, broker, kpi.Options{DashboardInterval: cfg.DashboardInterval, Retention: cfg.KPIRetention, Log: log})
	kpis.Start(ctx)
	defer kpis.Close()
	if cfg.DemoFeed {
		kpis.StartDemo(ctx, demoFeedInterval)
	}

	ws := newWebsocket(cfg, log, tokens)
	defer ws.Shutdown()
	res := &resolvers.Resolver{
		DB: db, Tokens: tokens, Statuses: statuses, Messages: messages, Chat: chatState, KPIs: kpis, Notifications: inbox, Log: log,
		GuestSignIn: cfg.GuestSignIn, GuestTTL: guestTokenTTL,
		MessageRate: ratelimit.NewKeyed(burstOf(cfg.MessagesPerSec), nil),
		TypingRate:  ratelimit.NewKeyed(burstOf(cfg.TypingPerSecond), nil),
		StatusRate:  ratelimit.NewKeyed(burstOf(cfg.StatusesPerSec), nil),
	}
	if rb, ok := rawBroker.(*redispubsub.Broker); ok {
		// With Redis, the per-user limits are shared by every replica.
		shared := redisrate.New(rb.Client(), rb.Prefix())
		failed := func(err error) {
			brokerErrors.WithLabelValues("rate_limit").Inc()
			log.Debug("shared rate limit unavailable; limiting locally", "err", err)
		}
		res.MessageRate.Share(shared, "messages", failed)
		res.TypingRate.Share(shared, "typing", failed)
		res.StatusRate.Share(shared, "statuses", failed)
	}
	var draining atomic.Bool
	handler := newHandler(cfg, log, res, db, ws, broker, &draining)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		// HTTPS and WSS directly (HTTP/1.1: WebSocket upgrades need it).
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	log.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+displayAddr(ln.Addr()),
		"database", string(db.Dialect()), "data", dataLocation(cfg), "broker", brokerName, "version", version)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down")
	draining.Store(true) // readiness fails from now on
	ws.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown did not finish in time", "err", err)
	}
	log.Info("stopped")
	return nil
}

// newBroker returns the Redis broker when REDIS_URL is set, else the
// in-process one. Redis being down at start is not fatal: the server runs
// degraded (live delivery from the database) until it is back.
func newBroker(ctx context.Context, cfg *config, db *store.DB, log *slog.Logger) (pubsub.Broker, string, error) {
	if cfg.RedisURL == "" {
		return mempubsub.New(0), "in-process", nil
	}
	// Channels are named after the database's identity: the replicas of one
	// deployment meet, other deployments on the same Redis stay apart.
	id, err := db.DeploymentID(ctx)
	if err != nil {
		return nil, "", err
	}
	b, err := redispubsub.New(cfg.RedisURL, redispubsub.Options{Prefix: "switchboard:" + id + ":"})
	if err != nil {
		return nil, "", err
	}
	if err := b.Ping(ctx); err != nil {
		log.Warn("redis is not reachable; running degraded until it is", "err", err)
	}
	return b, "redis", nil
}

// newTokens returns the token signer: AUTH_SECRET when set, else the key kept
// in the database (generated on first start).
func newTokens(ctx context.Context, cfg *config, db *store.DB) (*auth.Tokens, error) {
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
func dataLocation(cfg *config) string {
	if u, err := urlRedacted(cfg.DatabaseURL); err == nil {
		return u
	}
	return "(unparsable DATABASE_URL)"
}
