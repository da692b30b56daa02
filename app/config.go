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
	"slices"
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
	Addr        string
	DataDir     string
	DatabaseURL string
	// DBTimeout is the longest wait for one database statement (one
	// transaction) before the operation fails with UNAVAILABLE.
	DBTimeout      time.Duration
	RedisURL       string
	AuthSecret     []byte
	AllowedOrigins []string
	GuestSignIn    bool
	Introspection  bool
	DemoFeed       bool
	LogLevel       slog.Level
	LogFormat      string
	Env            string
	// Playground mounts the GraphiQL playground at /playground.
	Playground bool
	// MetricsAddr, when set, is the only listener serving /metrics.
	MetricsAddr string
	// WSKeepAlive is the WebSocket keepalive interval; a graphql-transport-ws
	// client silent for 1.4 intervals is disconnected.
	WSKeepAlive time.Duration
	// WSCompression offers permessage-deflate to WebSocket clients.
	WSCompression bool
	// DashboardInterval is the shortest time between two dashboard events
	// to one subscriber.
	DashboardInterval time.Duration
	// DemoFeedInterval is how often the KPI demo feed moves its values.
	DemoFeedInterval time.Duration
	// KPIRetention is how long KPI samples are kept.
	KPIRetention time.Duration
	// TLSCertFile and TLSKeyFile, when set, make the server speak HTTPS and
	// WSS itself.
	TLSCertFile, TLSKeyFile string
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// SessionMaxAge is the absolute lifetime of a guest's session, across
	// refreshSession.
	SessionMaxAge time.Duration
	// Limits (0 switches one off).
	ConnsPerAddr    int     // WebSocket connections per client address
	SubsPerConn     int     // operations running at once on one connection
	OpsPerSecond    float64 // operations started per second on one connection
	MessagesPerSec  float64 // chat messages per second per user
	TypingPerSecond float64 // typing events per second per user
	StatusesPerSec  float64 // statuses posted per second per user
	RoomsPerHour    float64 // rooms created (or direct rooms opened anew) per hour per user
	MaxWSMessage    int64   // bytes of one WebSocket message from a client
	MaxHTTPBody     int64   // bytes of an HTTP request body
	RequestsPerSec  float64 // operations per second per user (per client address when anonymous), HTTP and WebSocket together
	SignInsPerMin   float64 // guest sign-ins per minute per client address
	ConnsPerUser    int     // WebSocket connections one signed-in user may hold (on one replica)
	// KPIPublic lets anonymous callers read the KPIs and the dashboard.
	KPIPublic bool
	// QueryLimits bound every GraphQL document; they cannot be switched off.
	QueryLimits QueryLimits
	// Version is the server's version, reported by /healthz, the WebSocket
	// connection_ack and the log; ParseConfig leaves it to the caller.
	Version string
	// InjectPanic is for tests only, and no setting: when not nil, it is
	// called with the name of every place the server recovers panics at
	// (its where label), on that place's goroutine, so that a test can
	// panic there (see panics.Guard.Inject and e2e/panics_test.go).
	InjectPanic func(where string)
	// FollowWait is for tests only, and no setting: how long a message's
	// fan-out waits for the room-list entries it moves (gqlws
	// Options.FollowWait; 0: its default), so that a test on a slow,
	// instrumented build sees them go together.
	FollowWait time.Duration
}

// Production reports whether ENV=production tightened the defaults.
func (c *Config) Production() bool { return c.Env == "production" }

// ParseConfig reads the configuration from args (flags, without the program
// name) and getenv, and validates it. Every problem is reported at once.
// Help and flag errors are written to output; -h and --help return
// flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, output io.Writer) (*Config, error) {
	c := &Config{QueryLimits: defaultQueryLimits, Version: "dev"}
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(output)
	settings := c.settings()
	values := make([]*string, len(settings))
	for i, s := range settings {
		def := s.def
		if v := strings.TrimSpace(getenv(s.env)); v != "" {
			def = v
		}
		values[i] = fs.String(s.flag, def, s.usage+" ("+s.env+")")
	}
	fs.Usage = func() {
		fmt.Fprintln(output, "Usage of switchboard (subcommands: token, version, healthcheck):")
		fs.PrintDefaults()
		fmt.Fprintf(output, "\nFrom the environment only (a flag would show it in the process list):\n"+
			"  the HS256 signing key, at least %d bytes; required with ENV=production (AUTH_SECRET)\n", auth.MinKeyLength)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: token, version, healthcheck)", fs.Arg(0))
	}
	var errs []error
	for i, s := range settings {
		if err := s.set(*values[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither"))
	}
	// The signing key is read from the environment only: a flag would show
	// it in the process list.
	if secret := getenv("AUTH_SECRET"); secret != "" {
		if len(secret) < auth.MinKeyLength {
			errs = append(errs, fmt.Errorf("AUTH_SECRET must be at least %d bytes long (got %d)", auth.MinKeyLength, len(secret)))
		}
		c.AuthSecret = []byte(secret)
	}
	if c.Production() && c.AuthSecret == nil {
		errs = append(errs, errNoAuthSecret)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n  %w", errors.Join(errs...))
	}
	return c, nil
}

// errNoAuthSecret refuses to start a production server without a signing
// key of its own: the key kept in the database is for development only.
var errNoAuthSecret = fmt.Errorf("ENV=production needs AUTH_SECRET, a signing key of at least %d random bytes "+
	"(the key kept in the database is for development only); make one with: openssl rand -base64 48", auth.MinKeyLength)

// setting is one configuration setting: an environment variable and its
// flag, the default, the flag's help, and set, which reads a value into the
// Config or says what is wrong with it.
type setting struct {
	env, flag, def, usage string
	set                   func(v string) error
}

// settings are every setting but AUTH_SECRET, in the order they are set:
// ENV, DATA_DIR and DATABASE_URL first, since other defaults depend on
// them.
func (c *Config) settings() []setting {
	return slices.Concat([]setting{
		{env: "ENV", flag: "env", def: "development", usage: "development or production", set: c.setEnv},
		{env: "DATA_DIR", flag: "data-dir", def: "./data", usage: "directory of the embedded database", set: func(v string) error { c.DataDir = v; return nil }},
		{env: "DATABASE_URL", flag: "database-url", usage: "sqlite:PATH, mysql://user:password@host:3306/dbname or postgres://user:password@host:5432/dbname; default sqlite:<data-dir>/switchboard.db", set: c.setDatabaseURL},
		duration("DB_TIMEOUT", "db-timeout", "5s", "longest wait for one database statement before UNAVAILABLE", 100*time.Millisecond, 10*time.Minute, &c.DBTimeout),
		{env: "ADDR", flag: "addr", def: ":8080", usage: "listen address", set: c.setAddr},
		{env: "REDIS_URL", flag: "redis-url", usage: "redis://host:6379/0, a Sentinel's (?master_name=…&addr=…) or a Cluster's (?addr=…&addr=…); unset means the in-process broker", set: c.setRedisURL},
		{env: "ALLOWED_ORIGINS", flag: "allowed-origins", usage: "comma-separated origins allowed for WebSocket upgrades and CORS; default the server's own", set: c.setAllowedOrigins},
		{env: "TRUSTED_PROXIES", flag: "trusted-proxies", usage: "comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client", set: c.setTrustedProxies},
		{env: "TLS_CERT_FILE", flag: "tls-cert-file", usage: "PEM certificate (chain) to serve HTTPS and WSS with; with TLS_KEY_FILE", set: func(v string) error { c.TLSCertFile = v; return nil }},
		{env: "TLS_KEY_FILE", flag: "tls-key-file", usage: "PEM private key of TLS_CERT_FILE", set: func(v string) error { c.TLSKeyFile = v; return nil }},
		{env: "METRICS_ADDR", flag: "metrics-addr", usage: "host:port of a separate listener that alone serves /metrics, such as 127.0.0.1:9090; unset, ADDR serves it", set: c.setMetricsAddr},
		{env: "LOG_LEVEL", flag: "log-level", def: "info", usage: "debug, info, warn or error", set: c.setLogLevel},
		{env: "LOG_FORMAT", flag: "log-format", usage: "text or json; default text, json in production", set: c.setLogFormat},
		boolean("GUEST_SIGNIN", "guest-signin", "allow signIn(name); default true, false in production", &c.GuestSignIn, c.development),
		boolean("INTROSPECTION", "introspection", "answer introspection queries; /schema.graphql serves the SDL either way; default true, false in production", &c.Introspection, c.development),
		boolean("DEMO_FEED", "demo-feed", "run the KPI demo feed; default true with SQLite, false with MySQL, PostgreSQL or in production", &c.DemoFeed,
			func() bool { return strings.HasPrefix(c.DatabaseURL, "sqlite:") && !c.Production() }),
		boolean("KPI_PUBLIC", "kpi-public", "anonymous callers may read the KPIs and the dashboard; default true, false in production", &c.KPIPublic, c.development),
		boolean("PLAYGROUND", "playground", "serve the GraphiQL playground at /playground; default true, false in production", &c.Playground, c.development),
		boolean("WS_COMPRESSION", "ws-compression", "offer permessage-deflate to WebSocket clients; default true", &c.WSCompression, func() bool { return true }),
		duration("DEMO_FEED_INTERVAL", "demo-feed-interval", "5s", "how often the KPI demo feed moves its values", 10*time.Millisecond, time.Hour, &c.DemoFeedInterval),
		duration("DASHBOARD_INTERVAL", "dashboard-interval", "10s", "shortest time between two dashboard events to a subscriber", 100*time.Millisecond, time.Hour, &c.DashboardInterval),
		duration("KPI_RETENTION", "kpi-retention", "168h", "how long KPI samples are kept for history", time.Minute, 8760*time.Hour, &c.KPIRetention),
		duration("SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long a graceful shutdown may wait for requests in flight", time.Second, 5*time.Minute, &c.ShutdownTimeout),
		duration("WS_KEEPALIVE", "ws-keepalive", "25s", "WebSocket keepalive interval; a client silent for 1.4 intervals is dropped", time.Second, 5*time.Minute, &c.WSKeepAlive),
		duration("SESSION_MAX_AGE", "session-max-age", "720h", "absolute lifetime of a session across refreshSession", time.Second, 8760*time.Hour, &c.SessionMaxAge),
	}, c.limitSettings())
}

// limitSettings are the rate, size and document limits.
func (c *Config) limitSettings() []setting {
	return []setting{
		count("LIMIT_CONNS_PER_ADDR", "limit-conns-per-addr", "1000", "WebSocket connections per client address", &c.ConnsPerAddr),
		count("LIMIT_SUBSCRIPTIONS", "limit-subscriptions", "100", "operations running at once on one WebSocket connection", &c.SubsPerConn),
		rate("LIMIT_OPERATIONS", "limit-operations", "20", "operations started per second on one WebSocket connection", &c.OpsPerSecond),
		rate("LIMIT_MESSAGES", "limit-messages", "5", "chat messages per second per user", &c.MessagesPerSec),
		rate("LIMIT_TYPING", "limit-typing", "2", "typing events per second per user", &c.TypingPerSecond),
		rate("LIMIT_STATUSES", "limit-statuses", "2", "statuses posted per second per user", &c.StatusesPerSec),
		rate("LIMIT_REQUESTS", "limit-requests", "50", "operations per second per user (per client address when anonymous), HTTP and WebSocket together", &c.RequestsPerSec),
		limit("LIMIT_SIGNINS", "limit-signins", "10", "guest sign-ins per minute per client address (bursts of that many)", false, func(n float64) { c.SignInsPerMin = n }),
		count("LIMIT_CONNS_PER_USER", "limit-conns-per-user", "20", "WebSocket connections one signed-in user may hold on one replica", &c.ConnsPerUser),
		limit("LIMIT_ROOMS", "limit-rooms", "10", "rooms a user may create per hour, public ones and direct ones opened anew (bursts of that many)", false,
			func(n float64) { c.RoomsPerHour = n }),
		size("LIMIT_WS_MESSAGE", "limit-ws-message", "65536", "largest WebSocket message from a client, in bytes (larger: close 1009)", &c.MaxWSMessage),
		size("LIMIT_HTTP_BODY", "limit-http-body", "1048576", "largest HTTP request body, in bytes (larger: 413)", &c.MaxHTTPBody),
		// The document limits protect the process itself: each has a
		// range, and no 0 that would switch it off.
		bounded("LIMIT_QUERY_TOKENS", "limit-query-tokens", "lexer tokens of one GraphQL document", 100, 1000000, &c.QueryLimits.Tokens),
		bounded("LIMIT_QUERY_DEPTH", "limit-query-depth", "fields nested in one GraphQL operation (GraphiQL's introspection needs 13)", 2, 100, &c.QueryLimits.Depth),
		bounded("LIMIT_QUERY_ALIASES", "limit-query-aliases", "aliased fields in one GraphQL document", 1, 10000, &c.QueryLimits.Aliases),
		bounded("LIMIT_QUERY_COMPLEXITY", "limit-query-complexity", "complexity of one GraphQL operation (a field counts 1; one with first, last or limit counts what it selects times that size)", 10, 1000000, &c.QueryLimits.Complexity),
	}
}

// development reports whether the tighter production defaults are off.
func (c *Config) development() bool { return !c.Production() }

func (c *Config) setEnv(v string) error {
	c.Env = strings.ToLower(v)
	if c.Env != "development" && c.Env != "production" {
		return fmt.Errorf("ENV must be development or production (got %q)", v)
	}
	return nil
}

func (c *Config) setDatabaseURL(v string) error {
	c.DatabaseURL = v
	if v == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "switchboard.db")
	}
	for _, scheme := range []string{"sqlite:", "mysql://", "postgres://", "postgresql://"} {
		if strings.HasPrefix(c.DatabaseURL, scheme) {
			return nil
		}
	}
	return errors.New("DATABASE_URL must start with sqlite:, mysql:// or postgres://")
}

func (c *Config) setAddr(v string) error {
	c.Addr = v
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("ADDR must be host:port or :port (got %q)", v)
	}
	return nil
}

func (c *Config) setMetricsAddr(v string) error {
	c.MetricsAddr = v
	if v == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("METRICS_ADDR must be host:port or :port (got %q)", v)
	}
	return nil
}

func (c *Config) setRedisURL(v string) error {
	c.RedisURL = v
	if v == "" {
		return nil
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return errors.New("REDIS_URL must look like redis://host:6379/0 (see the README for Sentinel and Cluster)")
	}
	client, err := openRedis(v) // connects to nothing: checks the options
	if err != nil {
		return err
	}
	return client.Close()
}

func (c *Config) setAllowedOrigins(v string) error {
	var errs []error
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if u, err := url.Parse(o); o != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "") {
			errs = append(errs, fmt.Errorf("ALLOWED_ORIGINS entry %q must be an origin like https://app.example.com, or *", o))
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	return errors.Join(errs...)
}

func (c *Config) setTrustedProxies(v string) error {
	p, err := request.ParseTrustedProxies(v)
	if err != nil {
		return fmt.Errorf("TRUSTED_PROXIES must be comma-separated IP addresses or CIDR prefixes (got %q)", v)
	}
	c.TrustedProxies = p
	return nil
}

func (c *Config) setLogLevel(v string) error {
	if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
		return fmt.Errorf("LOG_LEVEL must be debug, info, warn or error (got %q)", v)
	}
	return nil
}

func (c *Config) setLogFormat(v string) error {
	c.LogFormat = strings.ToLower(v)
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Production() {
			c.LogFormat = "json"
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("LOG_FORMAT must be text or json (got %q)", v)
	}
	return nil
}

// boolean is a true/false setting whose default, when it is unset, is def's
// answer (asked after the settings before it are set).
func boolean(env, flag, usage string, dst *bool, def func() bool) setting {
	return setting{env: env, flag: flag, usage: "true or false: " + usage, set: func(v string) error {
		if v == "" {
			*dst = def()
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s must be true or false (got %q)", env, v)
		}
		*dst = b
		return nil
	}}
}

// duration is a duration setting within lo..hi.
func duration(env, flag, def, usage string, lo, hi time.Duration, dst *time.Duration) setting {
	return setting{env: env, flag: flag, def: def, usage: fmt.Sprintf("%s, %s..%s", usage, shortDuration(lo), shortDuration(hi)), set: func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("%s must be a duration from %s to %s (got %q)", env, shortDuration(lo), shortDuration(hi), v)
		}
		*dst = d
		return nil
	}}
}

// maxLimit bounds every rate and size limit (a rate that high is no limit
// in practice, and a count fits every integer field).
const maxLimit = 1 << 31

// limit is a rate or size limit: 0 switches it off; whole ones count
// things.
func limit(env, flag, def, usage string, whole bool, set func(float64)) setting {
	return setting{env: env, flag: flag, def: def, usage: usage + "; 0 for no limit", set: func(v string) error {
		// !(n >= 0) also refuses NaN; the bound keeps whole limits in range
		// of their integer fields.
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || !(n >= 0) || n > maxLimit || (whole && n != math.Trunc(n)) {
			return fmt.Errorf("%s must be 0 (no limit) or a positive number up to %d (got %q)", env, int64(maxLimit), v)
		}
		set(n)
		return nil
	}}
}

// rate is a per-second limit, with bursts of twice that.
func rate(env, flag, def, usage string, dst *float64) setting {
	return limit(env, flag, def, usage+" (bursts of twice that)", false, func(n float64) { *dst = n })
}

// count is a limit on a number of things at once.
func count(env, flag, def, usage string, dst *int) setting {
	return limit(env, flag, def, usage, true, func(n float64) { *dst = int(n) })
}

// size is a limit in bytes.
func size(env, flag, def, usage string, dst *int64) setting {
	return limit(env, flag, def, usage, true, func(n float64) { *dst = int64(n) })
}

// bounded is a whole number within lo..hi that cannot be switched off; its
// default is *dst's value.
func bounded(env, flag, usage string, lo, hi int, dst *int) setting {
	return setting{env: env, flag: flag, def: strconv.Itoa(*dst), usage: fmt.Sprintf("%s, %d..%d", usage, lo, hi), set: func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%s must be a whole number from %d to %d (got %q)", env, lo, hi, v)
		}
		*dst = n
		return nil
	}}
}

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
