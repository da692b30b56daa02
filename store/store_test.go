package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestMain fails the package when a test leaves goroutines behind, once every
// test and its cleanups (closing the stores) have run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// forEachBackend runs test once per database kind, in parallel subtests
// named after the dialect. Each call of test opens its own databases.
func forEachBackend(t *testing.T, test func(t *testing.T, dialect store.Dialect)) {
	t.Helper()
	for _, dialect := range storetest.Backends {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			test(t, dialect)
		})
	}
}

// openURL opens and migrates the store at rawURL, closed when the test ends.
// Unlike storetest.Open it lets a test open one database more than once.
func openURL(tb testing.TB, rawURL string) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), rawURL, store.Options{})
	require.NoError(tb, err, "open store")
	tb.Cleanup(func() { assert.NoError(tb, db.Close(), "close store") })
	require.NoError(tb, db.Migrate(context.Background()), "migrate")
	return db
}

// newUser creates a user named name.
func newUser(tb testing.TB, db *store.DB, name string) *models.User {
	tb.Helper()
	u, err := db.CreateUser(context.Background(), name)
	require.NoError(tb, err, "create user %q", name)
	return u
}

func TestUserRoundTrip(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ctx := t.Context()
		tests := []struct {
			name     string
			userName string
		}{
			{name: "ascii", userName: "ada"},
			{name: "accents", userName: "Zoë Ångström"},
			{name: "four-byte emoji", userName: "rocket 🚀"},
			{name: "quotes and wildcards", userName: `O'Brien "%_\`},
		}
		before := time.Now().UTC().Truncate(time.Millisecond)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				created, err := db.CreateUser(ctx, tt.userName)
				require.NoError(t, err)
				assert.Positive(t, created.ID)
				assert.Equal(t, tt.userName, created.Name)
				assert.Equal(t, time.UTC, created.CreatedAt.Location())
				assert.False(t, created.CreatedAt.Before(before), "CreatedAt %v is before the test started (%v)", created.CreatedAt, before)

				got, err := db.User(ctx, created.ID)
				require.NoError(t, err)
				assert.Equal(t, created, got)
				assert.True(t, created.CreatedAt.Equal(got.CreatedAt))
			})
		}
	})
}

func TestUserNotFound(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		existing := newUser(t, db, "ada")
		tests := []struct {
			name string
			id   int64
		}{
			{name: "next id", id: existing.ID + 1},
			{name: "far away", id: 1 << 40},
			{name: "zero", id: 0},
			{name: "negative", id: -1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				u, err := db.User(t.Context(), tt.id)
				require.Error(t, err)
				assert.Nil(t, u)
				assert.Equal(t, models.NotFound, models.ErrorCode(err), "error %q", err)
			})
		}
	})
}

func TestAuthSecret(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		t.Run("stable across calls and stores", func(t *testing.T) {
			url := storetest.URL(t, dialect)
			first := openURL(t, url)
			secret, err := first.AuthSecret(t.Context())
			require.NoError(t, err)
			require.Len(t, secret, 32)
			assert.NotEqual(t, make([]byte, 32), secret, "the secret is all zeroes")

			again, err := first.AuthSecret(t.Context())
			require.NoError(t, err)
			assert.Equal(t, secret, again, "second call on the same store")

			second := openURL(t, url)
			fromSecond, err := second.AuthSecret(t.Context())
			require.NoError(t, err)
			assert.Equal(t, secret, fromSecond, "a second store on the same database")
		})
		t.Run("differs between databases", func(t *testing.T) {
			a, err := storetest.Open(t, dialect).AuthSecret(t.Context())
			require.NoError(t, err)
			b, err := storetest.Open(t, dialect).AuthSecret(t.Context())
			require.NoError(t, err)
			assert.NotEqual(t, a, b)
		})
		t.Run("replicas racing agree", func(t *testing.T) {
			url := storetest.URL(t, dialect)
			replicas := []*store.DB{openURL(t, url), openURL(t, url)}
			const callers = 8
			secrets := make([][]byte, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					s, err := replicas[i%len(replicas)].AuthSecret(t.Context())
					assert.NoError(t, err, "caller %d", i)
					secrets[i] = s
				})
			}
			wg.Wait()
			for i, s := range secrets {
				assert.Len(t, s, 32, "caller %d", i)
				assert.Equal(t, secrets[0], s, "caller %d got another secret than caller 0", i)
			}
		})
	})
}

func TestMySQLDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		url        string
		wantUser   string
		wantPasswd string
		wantAddr   string
		wantDB     string
		check      func(t *testing.T, cfg *mysqldriver.Config)
	}{
		{
			name:     "default port",
			url:      "mysql://root@127.0.0.1/switchboard",
			wantUser: "root", wantAddr: "127.0.0.1:3306", wantDB: "switchboard",
			check: func(t *testing.T, cfg *mysqldriver.Config) {
				// A database that stops answering fails COMMIT too, in time.
				assert.Equal(t, store.DefaultTimeout, cfg.Timeout, "timeout")
				assert.Equal(t, store.DefaultTimeout, cfg.ReadTimeout, "readTimeout")
				assert.Equal(t, store.DefaultTimeout, cfg.WriteTimeout, "writeTimeout")
				// One round trip per statement, not a prepared statement each.
				assert.True(t, cfg.InterpolateParams, "interpolateParams")
			},
		},
		{
			name:     "interpolateParams can be turned off",
			url:      "mysql://root@db/sb?interpolateParams=false",
			wantUser: "root", wantAddr: "db:3306", wantDB: "sb",
			check: func(t *testing.T, cfg *mysqldriver.Config) {
				assert.False(t, cfg.InterpolateParams, "interpolateParams")
			},
		},
		{
			name:     "explicit port and password",
			url:      "mysql://app:secret@db.example.com:3307/sb",
			wantUser: "app", wantPasswd: "secret", wantAddr: "db.example.com:3307", wantDB: "sb",
		},
		{
			name:     "url-escaped special characters in the password",
			url:      "mysql://app:p%40ss%3Aw%2Frd%3F%23%25%28%29%20x@db:3306/sb",
			wantUser: "app", wantPasswd: "p@ss:w/rd?#%() x", wantAddr: "db:3306", wantDB: "sb",
		},
		{
			name:     "IPv6 host without port",
			url:      "mysql://root@[::1]/sb",
			wantUser: "root", wantAddr: "[::1]:3306", wantDB: "sb",
		},
		{
			name:     "no user",
			url:      "mysql://db/sb",
			wantAddr: "db:3306", wantDB: "sb",
		},
		{
			name:     "query parameters pass through",
			url:      "mysql://root@db/sb?readTimeout=5s&timeout=2s&time_zone=%27%2B00%3A00%27",
			wantUser: "root", wantAddr: "db:3306", wantDB: "sb",
			check: func(t *testing.T, cfg *mysqldriver.Config) {
				assert.Equal(t, 5*time.Second, cfg.ReadTimeout, "readTimeout")
				assert.Equal(t, 2*time.Second, cfg.Timeout, "timeout")
				assert.Equal(t, store.DefaultTimeout, cfg.WriteTimeout, "writeTimeout, not in the URL")
				assert.Equal(t, map[string]string{"time_zone": "'+00:00'"}, cfg.Params, "system variables")
			},
		},
		{
			// The canonical GORM DSN carries loc=Local: the store keeps UTC
			// anyway, so timestamps mean the same on every replica.
			name:     "parseTime and loc cannot be turned off",
			url:      "mysql://root@db/sb?charset=utf8mb4&parseTime=False&loc=Local",
			wantUser: "root", wantAddr: "db:3306", wantDB: "sb",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dsn, err := store.MySQLDSN(tt.url, store.DefaultTimeout)
			require.NoError(t, err)
			cfg, err := mysqldriver.ParseDSN(dsn)
			require.NoError(t, err, "the driver cannot parse %q", dsn)
			assert.Equal(t, "tcp", cfg.Net)
			assert.Equal(t, tt.wantUser, cfg.User)
			assert.Equal(t, tt.wantPasswd, cfg.Passwd)
			assert.Equal(t, tt.wantAddr, cfg.Addr)
			assert.Equal(t, tt.wantDB, cfg.DBName)
			assert.True(t, cfg.ParseTime, "parseTime in %q", dsn)
			assert.Equal(t, time.UTC, cfg.Loc, "loc in %q", dsn)
			assert.Equal(t, "utf8mb4_unicode_ci", cfg.Collation)
			assert.Contains(t, dsn, "charset=utf8mb4")
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

func TestMySQLDSNErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		url     string
		wantMsg string
	}{
		{name: "no host", url: "mysql:///sb", wantMsg: "needs a host"},
		{name: "no database", url: "mysql://root@db:3306", wantMsg: "needs a database name"},
		{name: "empty database", url: "mysql://root@db:3306/", wantMsg: "needs a database name"},
		{name: "nested path", url: "mysql://root@db:3306/sb/extra", wantMsg: "needs a database name"},
		{name: "bad port", url: "mysql://root@db:port/sb", wantMsg: "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dsn, err := store.MySQLDSN(tt.url, store.DefaultTimeout)
			require.Error(t, err, "got DSN %q", dsn)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	notADir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notADir, nil, 0o600))
	tests := []struct {
		name    string
		url     string
		wantMsg []string
	}{
		{name: "unknown scheme", url: "oracle://app:hunter2@db/sb", wantMsg: []string{"sqlite:", "mysql://", "postgres://"}},
		{name: "empty", url: "", wantMsg: []string{"sqlite:", "mysql://", "postgres://"}},
		{name: "bare path", url: "./data/switchboard.db", wantMsg: []string{"sqlite:", "mysql://", "postgres://"}},
		{name: "mysql without slashes", url: "mysql:root@db/sb", wantMsg: []string{"sqlite:", "mysql://", "postgres://"}},
		{name: "postgres without database", url: "postgres://app:hunter2@db", wantMsg: []string{"needs a database name"}},
		{name: "postgresql without host", url: "postgresql:///sb", wantMsg: []string{"needs a host"}},
		{name: "postgres with a bad sslmode", url: "postgres://app:hunter2@db/sb?sslmode=sometimes", wantMsg: []string{"sslmode"}},
		{name: "sqlite without a path", url: "sqlite:", wantMsg: []string{"needs a file path"}},
		{name: "sqlite under a regular file", url: "sqlite:" + filepath.Join(notADir, "sb.db"), wantMsg: []string{"create database directory"}},
		{name: "mysql without database", url: "mysql://app:hunter2@db", wantMsg: []string{"needs a database name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := store.Open(t.Context(), tt.url, store.Options{})
			if db != nil {
				_ = db.Close()
			}
			require.Error(t, err)
			for _, want := range tt.wantMsg {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), "hunter2", "the error shows the password")
		})
	}
}

func TestOpenUnreachableMySQL(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: the connection is refused at once.
	db, err := store.Open(t.Context(), "mysql://app:hunter2@127.0.0.1:1/sb", store.Options{})
	if db != nil {
		_ = db.Close()
	}
	require.Error(t, err)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "error %q", err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause stays reachable")
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestOpenUnreachablePostgres(t *testing.T) {
	t.Parallel()
	db, err := store.Open(t.Context(), "postgres://app:hunter2@127.0.0.1:1/sb?sslmode=disable", store.Options{})
	if db != nil {
		_ = db.Close()
	}
	require.Error(t, err)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "error %q", err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause stays reachable")
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestOpenCreatesSQLiteDirectory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  func(path string) string
	}{
		{name: "sqlite:PATH", url: func(path string) string { return "sqlite:" + path }},
		{name: "sqlite://PATH", url: func(path string) string { return "sqlite://" + path }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "not", "yet", "there", "switchboard.db")
			url := tt.url(path)
			db := openURL(t, url)
			u := newUser(t, db, "ada")
			assert.FileExists(t, path)

			// The data is in that file: a second store finds it.
			got, err := openURL(t, url).User(t.Context(), u.ID)
			require.NoError(t, err)
			assert.Equal(t, u, got)
		})
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		ctx := t.Context()
		url := storetest.URL(t, dialect)
		db := openURL(t, url)
		author := newUser(t, db, "ada")
		var posted []*models.Status
		for _, text := range []string{"one", "two"} {
			st, _, err := db.CreateStatus(ctx, author, text, time.Now(), nil)
			require.NoError(t, err)
			posted = append(posted, st)
		}
		secret, err := db.AuthSecret(ctx)
		require.NoError(t, err)

		require.NoError(t, db.Migrate(ctx), "second migration")
		require.NoError(t, db.Migrate(ctx), "third migration")
		restarted := openURL(t, url) // migrates once more, from a new process's point of view

		for _, s := range []*store.DB{db, restarted} {
			head, err := s.Head(ctx, models.StatusStream)
			require.NoError(t, err)
			assert.Equal(t, int64(2), head)
			got, err := s.StatusesAfter(ctx, 0, 10)
			require.NoError(t, err)
			assert.Equal(t, posted, got)
			again, err := s.AuthSecret(ctx)
			require.NoError(t, err)
			assert.Equal(t, secret, again)
		}
		next, _, err := restarted.CreateStatus(ctx, author, "three", time.Now(), nil)
		require.NoError(t, err)
		assert.Equal(t, int64(3), next.ID, "numbering continues after a migration")
	})
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		if dialect == store.SQLite {
			// Two processes on one fresh SQLite file (the server and the
			// token subcommand) can both fail with "table already exists".
			t.Skip("Migrate serialises concurrent migrations on MySQL only (see its doc comment)")
		}
		// Replicas starting together on a fresh database each migrate it.
		url := storetest.URL(t, dialect)
		const replicas = 3
		dbs := make([]*store.DB, replicas)
		for i := range dbs {
			db, err := store.Open(t.Context(), url, store.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			dbs[i] = db
		}
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Go(func() { assert.NoError(t, db.Migrate(t.Context()), "replica %d", i) })
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		author := newUser(t, dbs[0], "ada")
		st, _, err := dbs[1].CreateStatus(t.Context(), author, "hello", time.Now(), nil)
		require.NoError(t, err)
		assert.Equal(t, int64(1), st.ID)
		head, err := dbs[2].Head(t.Context(), models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, int64(1), head)
	})
}

func TestDialect(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		assert.Equal(t, dialect, db.Dialect())
		require.NoError(t, db.Ping(t.Context()))
	})
}

func TestPingClosed(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db, err := store.Open(t.Context(), storetest.URL(t, dialect), store.Options{})
		require.NoError(t, err)
		require.NoError(t, db.Close())
		err = db.Ping(t.Context())
		require.Error(t, err)
		assert.Equal(t, models.Unavailable, models.ErrorCode(err), "error %q", err)
		assert.True(t, strings.HasPrefix(err.Error(), "ping "+string(dialect)), "error %q", err)
	})
}
