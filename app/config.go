package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/request"
)

// Config is the server's configuration. ParseConfig reads it from flags and
// environment variables (a flag wins over its variable); the README's
// configuration table lists every setting with its default. A Config built
// by hand must be complete: Start uses it as it is.
type Config struct {
	Addr           string
	DataDir        string
	DatabaseURL    string
	RedisURL       string
	AuthSecret     []byte
	AllowedOrigins []string
	GuestSignIn    bool
	Introspection  bool
	DemoFeed       bool
	LogLevel       slog.Level
	LogFormat      string
	Env            string
	// WSKeepAlive is the WebSocket keepalive interval; a graphql-transport-ws
	// client silent for 1.4 intervals is disconnected.
	WSKeepAlive time.Duration
	// WSCompression offers permessage-deflate to WebSocket clients.
	WSCompression bool
	// DashboardInterval is the shortest time between two dashboard events
	// to one subscriber.
	DashboardInterval time.Duration
	// KPIRetention is how long KPI samples are kept.
	KPIRetention time.Duration
	// TLSCertFile and TLSKeyFile, when set, make the server speak HTTPS and
	// WSS itself.
	TLSCertFile, TLSKeyFile string
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Limits (0 switches one off).
	ConnsPerAddr    int     // WebSocket connections per client address
	SubsPerConn     int     // operations running at once on one connection
	OpsPerSecond    float64 // operations started per second on one connection
	MessagesPerSec  float64 // chat messages per second per user
	TypingPerSecond float64 // typing events per second per user
	StatusesPerSec  float64 // statuses posted per second per user
	MaxWSMessage    int64   // bytes of one WebSocket message from a client
	MaxHTTPBody     int64   // bytes of an HTTP request body
	// QueryLimits bound every GraphQL document; they cannot be switched off.
	QueryLimits QueryLimits
	// Version is the server's version, reported by /healthz, the WebSocket
	// connection_ack and the log; ParseConfig leaves it to the caller.
	Version string
}

// Production reports whether ENV=production tightened the defaults.
func (c *Config) Production() bool { return c.Env == "production" }

// ParseConfig reads the configuration from args (flags, without the program
// name) and getenv, and validates it. Every problem is reported at once.
// Help and flag errors are written to output; -h and --help return
// flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, output io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(output)
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	addr := fs.String("addr", env("ADDR", ":8080"), "listen address (ADDR)")
	dataDir := fs.String("data-dir", env("DATA_DIR", "./data"), "directory of the embedded database (DATA_DIR)")
	dbURL := fs.String("database-url", env("DATABASE_URL", ""), "sqlite:PATH or mysql://user:password@host:3306/dbname (DATABASE_URL; default sqlite:<data-dir>/switchboard.db)")
	redisURL := fs.String("redis-url", env("REDIS_URL", ""), "redis://host:6379/0; unset means the in-process broker (REDIS_URL)")
	origins := fs.String("allowed-origins", env("ALLOWED_ORIGINS", ""), "comma-separated origins allowed for WebSocket upgrades and CORS; default the server's own (ALLOWED_ORIGINS)")
	guest := fs.String("guest-signin", env("GUEST_SIGNIN", ""), "allow signIn(name): true or false (GUEST_SIGNIN; default true, false in production)")
	introspection := fs.String("introspection", env("INTROSPECTION", ""), "answer introspection queries: true or false; /schema.graphql serves the SDL either way (INTROSPECTION; default true, false in production)")
	demo := fs.String("demo-feed", env("DEMO_FEED", ""), "run the KPI demo feed: true or false (DEMO_FEED; default true with SQLite, false with MySQL or in production)")
	level := fs.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	format := fs.String("log-format", env("LOG_FORMAT", ""), "text or json (LOG_FORMAT; default text, json in production)")
	envName := fs.String("env", env("ENV", "development"), "development or production (ENV)")
	tlsCert := fs.String("tls-cert-file", env("TLS_CERT_FILE", ""), "PEM certificate (chain) to serve HTTPS and WSS with; with TLS_KEY_FILE (TLS_CERT_FILE)")
	tlsKey := fs.String("tls-key-file", env("TLS_KEY_FILE", ""), "PEM private key of TLS_CERT_FILE (TLS_KEY_FILE)")
	proxies := fs.String("trusted-proxies", env("TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client (TRUSTED_PROXIES)")
	c := &Config{QueryLimits: defaultQueryLimits, Version: "dev"}
	// The durations, each within a range.
	durations := []struct {
		env, flag, def, usage string
		lo, hi                time.Duration
		dst                   *time.Duration
		v                     *string
	}{
		{env: "DASHBOARD_INTERVAL", flag: "dashboard-interval", def: "10s", lo: 100 * time.Millisecond, hi: time.Hour, dst: &c.DashboardInterval, usage: "shortest time between two dashboard events to a subscriber"},
		{env: "KPI_RETENTION", flag: "kpi-retention", def: "168h", lo: time.Minute, hi: 8760 * time.Hour, dst: &c.KPIRetention, usage: "how long KPI samples are kept for history"},
		{env: "SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", def: "10s", lo: time.Second, hi: 5 * time.Minute, dst: &c.ShutdownTimeout, usage: "how long a graceful shutdown may wait for requests in flight"},
		{env: "WS_KEEPALIVE", flag: "ws-keepalive", def: "25s", lo: time.Second, hi: 5 * time.Minute, dst: &c.WSKeepAlive, usage: "WebSocket keepalive interval; a client silent for 1.4 intervals is dropped"},
	}
	for i := range durations {
		d := &durations[i]
		d.v = fs.String(d.flag, env(d.env, d.def), fmt.Sprintf("%s, %s..%s (%s)", d.usage, shortDuration(d.lo), shortDuration(d.hi), d.env))
	}
	// The rate and size limits: whole ones count things; 0 switches one off.
	limits := []struct {
		env, flag, def, usage string
		whole                 bool
		set                   func(float64)
		v                     *string
	}{
		{env: "LIMIT_CONNS_PER_ADDR", flag: "limit-conns-per-addr", def: "1000", whole: true, set: func(v float64) { c.ConnsPerAddr = int(v) }, usage: "WebSocket connections per client address"},
		{env: "LIMIT_SUBSCRIPTIONS", flag: "limit-subscriptions", def: "100", whole: true, set: func(v float64) { c.SubsPerConn = int(v) }, usage: "operations running at once on one WebSocket connection"},
		{env: "LIMIT_OPERATIONS", flag: "limit-operations", def: "20", set: func(v float64) { c.OpsPerSecond = v }, usage: "operations started per second on one WebSocket connection (bursts of twice that)"},
		{env: "LIMIT_MESSAGES", flag: "limit-messages", def: "5", set: func(v float64) { c.MessagesPerSec = v }, usage: "chat messages per second per user (bursts of twice that)"},
		{env: "LIMIT_TYPING", flag: "limit-typing", def: "2", set: func(v float64) { c.TypingPerSecond = v }, usage: "typing events per second per user (bursts of twice that)"},
		{env: "LIMIT_STATUSES", flag: "limit-statuses", def: "2", set: func(v float64) { c.StatusesPerSec = v }, usage: "statuses posted per second per user (bursts of twice that)"},
		{env: "LIMIT_WS_MESSAGE", flag: "limit-ws-message", def: "65536", whole: true, set: func(v float64) { c.MaxWSMessage = int64(v) }, usage: "largest WebSocket message from a client, in bytes (larger: close 1009)"},
		{env: "LIMIT_HTTP_BODY", flag: "limit-http-body", def: "1048576", whole: true, set: func(v float64) { c.MaxHTTPBody = int64(v) }, usage: "largest HTTP request body, in bytes (larger: 413)"},
	}
	for i := range limits {
		l := &limits[i]
		l.v = fs.String(l.flag, env(l.env, l.def), l.usage+"; 0 for no limit ("+l.env+")")
	}
	compression := fs.String("ws-compression", env("WS_COMPRESSION", ""), "offer permessage-deflate to WebSocket clients: true or false (WS_COMPRESSION; default true)")
	// The document limits protect the process itself: each has a range, and
	// no 0 that would switch it off.
	documentLimits := []struct {
		env, flag, usage string
		lo, hi           int
		v                *int
		s                *string
	}{
		{env: "LIMIT_QUERY_TOKENS", flag: "limit-query-tokens", lo: 100, hi: 1000000, usage: "lexer tokens of one GraphQL document"},
		{env: "LIMIT_QUERY_DEPTH", flag: "limit-query-depth", lo: 2, hi: 100, usage: "fields nested in one GraphQL operation (GraphiQL's introspection needs 13)"},
		{env: "LIMIT_QUERY_ALIASES", flag: "limit-query-aliases", lo: 1, hi: 10000, usage: "aliased fields in one GraphQL document"},
		{env: "LIMIT_QUERY_COMPLEXITY", flag: "limit-query-complexity", lo: 10, hi: 1000000, usage: "complexity of one GraphQL operation (a field counts 1, times the size of the lists it is in)"},
	}
	for i, v := range []*int{&c.QueryLimits.Tokens, &c.QueryLimits.Depth, &c.QueryLimits.Aliases, &c.QueryLimits.Complexity} {
		l := &documentLimits[i]
		l.v = v
		l.s = fs.String(l.flag, env(l.env, strconv.Itoa(*v)), fmt.Sprintf("%s, %d..%d (%s)", l.usage, l.lo, l.hi, l.env))
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: token)", fs.Arg(0))
	}

	c.Addr, c.DataDir, c.DatabaseURL, c.RedisURL, c.Env = *addr, *dataDir, *dbURL, *redisURL, strings.ToLower(*envName)
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch c.Env {
	case "development", "production":
	default:
		bad("ENV must be development or production (got %q)", *envName)
	}
	for _, d := range durations {
		v, err := time.ParseDuration(*d.v)
		if err != nil || v < d.lo || v > d.hi {
			bad("%s must be a duration from %s to %s (got %q)", d.env, shortDuration(d.lo), shortDuration(d.hi), *d.v)
			continue
		}
		*d.dst = v
	}
	for _, l := range limits {
		// !(v >= 0) also refuses NaN; the bound keeps whole limits in range
		// of their integer fields.
		v, err := strconv.ParseFloat(*l.v, 64)
		if err != nil || !(v >= 0) || v > maxLimit || (l.whole && v != math.Trunc(v)) {
			bad("%s must be 0 (no limit) or a positive number up to %d (got %q)", l.env, int64(maxLimit), *l.v)
			continue
		}
		l.set(v)
	}
	for _, l := range documentLimits {
		n, err := strconv.Atoi(*l.s)
		if err != nil || n < l.lo || n > l.hi {
			bad("%s must be a whole number from %d to %d (got %q)", l.env, l.lo, l.hi, *l.s)
			continue
		}
		*l.v = n
	}
	c.TLSCertFile, c.TLSKeyFile = *tlsCert, *tlsKey
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
	}
	if p, err := request.ParseTrustedProxies(*proxies); err != nil {
		bad("TRUSTED_PROXIES must be comma-separated IP addresses or CIDR prefixes (got %q)", *proxies)
	} else {
		c.TrustedProxies = p
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("ADDR must be host:port or :port (got %q)", c.Addr)
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "switchboard.db")
	}
	if !strings.HasPrefix(c.DatabaseURL, "sqlite:") && !strings.HasPrefix(c.DatabaseURL, "mysql://") {
		bad("DATABASE_URL must start with sqlite: or mysql://")
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("REDIS_URL must look like redis://host:6379/0")
		}
	}
	if s := getenv("AUTH_SECRET"); s != "" {
		if len(s) < auth.MinKeyLength {
			bad("AUTH_SECRET must be at least %d bytes long (got %d)", auth.MinKeyLength, len(s))
		}
		c.AuthSecret = []byte(s)
	}
	for _, o := range strings.Split(*origins, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "") {
			bad("ALLOWED_ORIGINS entry %q must be an origin like https://app.example.com, or *", o)
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	var err error
	if c.GuestSignIn, err = parseBool("GUEST_SIGNIN", *guest, !c.Production()); err != nil {
		errs = append(errs, err)
	}
	if c.Introspection, err = parseBool("INTROSPECTION", *introspection, !c.Production()); err != nil {
		errs = append(errs, err)
	}
	if c.WSCompression, err = parseBool("WS_COMPRESSION", *compression, true); err != nil {
		errs = append(errs, err)
	}
	if c.DemoFeed, err = parseBool("DEMO_FEED", *demo, strings.HasPrefix(c.DatabaseURL, "sqlite:") && !c.Production()); err != nil {
		errs = append(errs, err)
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		bad("LOG_LEVEL must be debug, info, warn or error (got %q)", *level)
	}
	c.LogFormat = strings.ToLower(*format)
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Production() {
			c.LogFormat = "json"
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT must be text or json (got %q)", *format)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n  %w", errors.Join(errs...))
	}
	return c, nil
}

// maxLimit bounds every rate and size limit (a rate that high is no limit
// in practice, and a count fits every integer field).
const maxLimit = 1 << 31

// shortDuration spells d as a configuration would: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseBool reads the boolean setting name: def when v is empty.
func parseBool(name, v string, def bool) (bool, error) {
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false (got %q)", name, v)
	}
	return b, nil
}

// newLogger returns the server's logger, writing to w in LOG_FORMAT at
// LOG_LEVEL; every line logged with a request's context carries its id.
func newLogger(c *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(request.LogHandler(h))
}
