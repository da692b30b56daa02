package app_test

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
)

// TestConfigValidation: every setting refuses what it cannot mean, naming
// the variable and what it takes, and all problems are reported at once.
func TestConfigValidation(t *testing.T) {
	cases := map[string]struct {
		env     map[string]string
		args    []string
		wantErr string
	}{
		"bad database scheme": {env: map[string]string{"DATABASE_URL": "oracle://x/y"}, wantErr: "DATABASE_URL must start with sqlite:, mysql:// or postgres://"},
		"short secret":        {env: map[string]string{"AUTH_SECRET": "short"}, wantErr: "AUTH_SECRET must be at least 32 bytes"},
		"bad bool":            {env: map[string]string{"GUEST_SIGNIN": "maybe"}, wantErr: "GUEST_SIGNIN must be true or false"},
		"bad introspection":   {args: []string{"--introspection", "sometimes"}, wantErr: "INTROSPECTION must be true or false"},
		"bad status limit":    {env: map[string]string{"LIMIT_STATUSES": "-1"}, wantErr: "LIMIT_STATUSES must be 0 (no limit) or a positive number"},
		"wordy room limit":    {env: map[string]string{"LIMIT_ROOMS": "ten"}, wantErr: "LIMIT_ROOMS must be 0 (no limit) or a positive number"},
		"bad level":           {env: map[string]string{"LOG_LEVEL": "loud"}, wantErr: "LOG_LEVEL"},
		"bad origin":          {env: map[string]string{"ALLOWED_ORIGINS": "app.example.com"}, wantErr: "ALLOWED_ORIGINS"},
		"bad env":             {env: map[string]string{"ENV": "staging"}, wantErr: "ENV must be"},
		"bad addr":            {args: []string{"--addr", "nowhere"}, wantErr: "ADDR"},
		"stray argument":      {args: []string{"serve"}, wantErr: "unexpected argument"},
		"NaN rate":            {env: map[string]string{"LIMIT_MESSAGES": "NaN"}, wantErr: "LIMIT_MESSAGES must be 0 (no limit) or a positive number"},
		"infinite rate":       {env: map[string]string{"LIMIT_TYPING": "+Inf"}, wantErr: "LIMIT_TYPING must be"},
		"huge size":           {env: map[string]string{"LIMIT_HTTP_BODY": "1e19"}, wantErr: "LIMIT_HTTP_BODY must be"},
		"fractional count":    {env: map[string]string{"LIMIT_SUBSCRIPTIONS": "1.5"}, wantErr: "LIMIT_SUBSCRIPTIONS must be"},
		"negative requests":   {env: map[string]string{"LIMIT_REQUESTS": "-5"}, wantErr: "LIMIT_REQUESTS must be 0 (no limit) or a positive number"},
		"wordy sign-ins":      {env: map[string]string{"LIMIT_SIGNINS": "many"}, wantErr: "LIMIT_SIGNINS must be 0 (no limit) or a positive number"},
		"fractional conns":    {env: map[string]string{"LIMIT_CONNS_PER_USER": "2.5"}, wantErr: "LIMIT_CONNS_PER_USER must be"},
		"KPI_PUBLIC not bool": {env: map[string]string{"KPI_PUBLIC": "maybe"}, wantErr: "KPI_PUBLIC must be true or false"},
		"bad keepalive":       {env: map[string]string{"WS_KEEPALIVE": "0s"}, wantErr: "WS_KEEPALIVE must be a duration from 1s to 5m"},
		"bad interval":        {args: []string{"--dashboard-interval", "soon"}, wantErr: "DASHBOARD_INTERVAL must be a duration from 100ms to 1h"},
		"bad retention":       {env: map[string]string{"KPI_RETENTION": "9000h"}, wantErr: "KPI_RETENTION must be a duration from 1m to 8760h"},
		"bad shutdown":        {env: map[string]string{"SHUTDOWN_TIMEOUT": "10m"}, wantErr: "SHUTDOWN_TIMEOUT must be a duration from 1s to 5m"},
		"bad proxies":         {env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, wantErr: "TRUSTED_PROXIES must be"},
		"bad compression":     {env: map[string]string{"WS_COMPRESSION": "gzip"}, wantErr: "WS_COMPRESSION must be true or false"},
		"bad redis url":       {env: map[string]string{"REDIS_URL": "localhost:6379"}, wantErr: "REDIS_URL must look like"},
		"bad sentinel option": {env: map[string]string{"REDIS_URL": "redis://s1:26379/0?master_name=m&sentinels=2"}, wantErr: "REDIS_URL (Sentinel)"},
		"bad cluster option":  {env: map[string]string{"REDIS_URL": "redis://n1:6379?addr=n2:6379&db=3"}, wantErr: "REDIS_URL (Cluster)"},
		"half a TLS pair":     {env: map[string]string{"TLS_CERT_FILE": "cert.pem"}, wantErr: "TLS_CERT_FILE and TLS_KEY_FILE go together"},
		"bad format":          {env: map[string]string{"LOG_FORMAT": "xml"}, wantErr: "LOG_FORMAT must be text or json"},
		"no session age":      {env: map[string]string{"SESSION_MAX_AGE": "0s"}, wantErr: "SESSION_MAX_AGE must be a duration from 1s to 8760h"},
		"production without a key": {env: map[string]string{"ENV": "production"},
			wantErr: "ENV=production needs AUTH_SECRET, a signing key of at least 32 random bytes (the key kept in the database is for development only); make one with: openssl rand -base64 48"},
		"production with a short key": {env: map[string]string{"ENV": "production", "AUTH_SECRET": "short"}, wantErr: "AUTH_SECRET must be at least 32 bytes"},
		"bad metrics addr":            {env: map[string]string{"METRICS_ADDR": "9090"}, wantErr: "METRICS_ADDR must be host:port or :port"},
		"bad playground":              {env: map[string]string{"PLAYGROUND": "maybe"}, wantErr: "PLAYGROUND must be true or false"},
		// The document limits protect the process: none can be switched off.
		"no depth limit":   {env: map[string]string{"LIMIT_QUERY_DEPTH": "0"}, wantErr: "LIMIT_QUERY_DEPTH must be a whole number from 2 to 100"},
		"negative tokens":  {env: map[string]string{"LIMIT_QUERY_TOKENS": "-1"}, wantErr: "LIMIT_QUERY_TOKENS must be a whole number from"},
		"wordy complexity": {env: map[string]string{"LIMIT_QUERY_COMPLEXITY": "lots"}, wantErr: "LIMIT_QUERY_COMPLEXITY must be a whole number from"},
		"no alias limit":   {env: map[string]string{"LIMIT_QUERY_ALIASES": "0"}, wantErr: "LIMIT_QUERY_ALIASES must be a whole number from"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := app.ParseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		env := map[string]string{"LIMIT_MESSAGES": "NaN", "WS_KEEPALIVE": "0s", "ENV": "staging"}
		_, err := app.ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
		for _, name := range []string{"LIMIT_MESSAGES", "WS_KEEPALIVE", "ENV"} {
			assert.ErrorContains(t, err, name)
		}
	})
}

// secret is a signing key for production configurations.
const secret = "0123456789abcdef0123456789abcdef0123456789abcdef"

// TestConfigDefaults: the defaults, production's tighter ones, and a flag
// winning over its variable.
func TestConfigDefaults(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c, err := app.ParseConfig(nil, func(string) string { return "" }, io.Discard)
		require.NoError(t, err)
		assert.Equal(t, ":8080", c.Addr)
		assert.Equal(t, "sqlite:data/switchboard.db", c.DatabaseURL)
		assert.True(t, c.GuestSignIn)
		assert.True(t, c.Introspection)
		assert.True(t, c.DemoFeed)
		assert.True(t, c.Playground)
		assert.Empty(t, c.MetricsAddr, "/metrics on ADDR")
		assert.Equal(t, "text", c.LogFormat)
		assert.Equal(t, 2.0, c.StatusesPerSec)
		assert.Equal(t, 50.0, c.RequestsPerSec)
		assert.Equal(t, 10.0, c.SignInsPerMin)
		assert.Equal(t, 20, c.ConnsPerUser)
		assert.True(t, c.KPIPublic, "KPIs are public in development")
		assert.Equal(t, 10.0, c.RoomsPerHour)
		assert.Equal(t, app.QueryLimits{Tokens: 10000, Depth: 15, Aliases: 30, Complexity: 5000}, c.QueryLimits)
		assert.Equal(t, 720*time.Hour, c.SessionMaxAge)
		assert.Nil(t, c.AuthSecret, "development keeps its key in the database")
	})
	t.Run("production tightens defaults, flags win over env", func(t *testing.T) {
		env := map[string]string{"ENV": "production", "DATABASE_URL": "mysql://u@db:3306/sb", "ADDR": ":1", "AUTH_SECRET": secret}
		c, err := app.ParseConfig([]string{"--addr", ":2"}, func(k string) string { return env[k] }, io.Discard)
		require.NoError(t, err)
		assert.Equal(t, ":2", c.Addr)
		assert.False(t, c.GuestSignIn)
		assert.False(t, c.Introspection)
		assert.False(t, c.DemoFeed)
		assert.False(t, c.KPIPublic, "KPIs need a signed-in user in production")
		assert.False(t, c.Playground)
		assert.Equal(t, "json", c.LogFormat)
	})
	t.Run("limits and introspection by flag or env", func(t *testing.T) {
		env := map[string]string{"ENV": "production", "INTROSPECTION": "true", "LIMIT_STATUSES": "7", "AUTH_SECRET": secret, "SESSION_MAX_AGE": "1h"}
		c, err := app.ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
		require.NoError(t, err)
		assert.True(t, c.Introspection, "INTROSPECTION wins over the production default")
		assert.False(t, c.DemoFeed, "no fake KPIs in production, even on SQLite")
		assert.Equal(t, 7.0, c.StatusesPerSec)
		assert.Equal(t, time.Hour, c.SessionMaxAge)
		c, err = app.ParseConfig([]string{"--limit-statuses", "0", "--introspection=false", "--limit-requests", "0", "--limit-signins", "0.5",
			"--limit-conns-per-user", "0", "--kpi-public=true", "--limit-rooms", "0"}, func(string) string { return "" }, io.Discard)
		require.NoError(t, err)
		assert.False(t, c.Introspection)
		assert.Zero(t, c.StatusesPerSec, "0: no limit")
		assert.Zero(t, c.RequestsPerSec)
		assert.Equal(t, 0.5, c.SignInsPerMin, "one sign-in every two minutes")
		assert.Zero(t, c.ConnsPerUser)
		assert.True(t, c.KPIPublic)
		assert.Zero(t, c.RoomsPerHour, "0: no limit")
	})
}
