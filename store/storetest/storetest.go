// Package storetest gives tests their own databases: a fresh SQLite file, a
// fresh MySQL database on the server named by TEST_MYSQL_URL, and a fresh
// PostgreSQL database on the server named by TEST_POSTGRES_URL. Each test
// gets its own, because test packages run in parallel against one server.
//
// A test that needs MySQL or PostgreSQL and finds its URL unset skips with a
// clear message, unless REQUIRE_SERVICES=1 (as .ci/run sets), where it
// fails.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the database/sql driver used to create test databases
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/store"
)

// Backends lists the database kinds a store test runs against.
var Backends = []store.Dialect{store.SQLite, store.MySQL, store.Postgres}

// URL returns the DATABASE_URL of a fresh, empty database of the given
// dialect, dropped when the test ends.
func URL(tb testing.TB, dialect store.Dialect) string {
	tb.Helper()
	switch dialect {
	case store.SQLite:
		return "sqlite:" + filepath.Join(tb.TempDir(), "switchboard.db")
	case store.MySQL:
		return MySQLURL(tb)
	case store.Postgres:
		return PostgresURL(tb)
	}
	tb.Fatalf("unknown dialect %q", dialect)
	return ""
}

// Open returns a migrated store on a fresh database of the given dialect,
// closed when the test ends.
func Open(tb testing.TB, dialect store.Dialect) *store.DB {
	tb.Helper()
	return OpenWith(tb, dialect, store.Options{})
}

// OpenWith is Open with opts.
func OpenWith(tb testing.TB, dialect store.Dialect, opts store.Options) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), URL(tb, dialect), opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return db
}

// MySQLURL creates a database named sb_<random> on the server of
// TEST_MYSQL_URL and returns its URL; the database is dropped when the test
// ends.
func MySQLURL(tb testing.TB) string {
	tb.Helper()
	return freshDatabase(tb, "TEST_MYSQL_URL", "MySQL", "mysql://root@127.0.0.1:3306/test",
		func(base string) (*sql.DB, error) {
			dsn, err := store.MySQLDSN(base, store.DefaultTimeout)
			if err != nil {
				return nil, err
			}
			return sql.Open("mysql", dsn)
		},
		"CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "DROP DATABASE IF EXISTS %s")
}

// PostgresURL creates a database named sb_<random> on the server of
// TEST_POSTGRES_URL and returns its URL; the database is dropped when the
// test ends.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return freshDatabase(tb, "TEST_POSTGRES_URL", "PostgreSQL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		func(base string) (*sql.DB, error) {
			cfg, err := store.PostgresConfig(base, store.DefaultTimeout)
			if err != nil {
				return nil, err
			}
			return stdlib.OpenDB(*cfg), nil
		},
		"CREATE DATABASE %s ENCODING 'UTF8' TEMPLATE template0", "DROP DATABASE IF EXISTS %s WITH (FORCE)")
}

// freshDatabase creates a database sb_<random> (create, a statement with
// %s for its name) on the server of the URL in the environment variable
// env (a kind of database, with an example URL for the message when env is
// unset), through a connection open makes, and returns the URL of that
// database. The database is dropped (drop) when the test ends. A server
// that does not answer within 10 s skips the test (fails it with
// REQUIRE_SERVICES=1), as an unset env does.
func freshDatabase(tb testing.TB, env, kind, example string, open func(base string) (*sql.DB, error), create, drop string) string {
	tb.Helper()
	base := os.Getenv(env)
	if base == "" {
		testenv.RequireService(tb, "%s is not set (e.g. %s); skipping the %s variant", env, example, kind)
		return ""
	}
	admin, err := open(base)
	if err != nil {
		tb.Fatalf("%s: %v", env, err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		testenv.RequireService(tb, "%s at %s does not answer: %v", kind, env, err)
		return ""
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sb_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, fmt.Sprintf(create, name)); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		db, err := open(base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec(fmt.Sprintf(drop, name))
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}
