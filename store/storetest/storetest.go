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
	base := os.Getenv("TEST_MYSQL_URL")
	if base == "" {
		testenv.RequireService(tb, "TEST_MYSQL_URL is not set (e.g. mysql://root@127.0.0.1:3306/test); skipping the MySQL variant")
		return ""
	}
	dsn, err := store.MySQLDSN(base, store.DefaultTimeout)
	if err != nil {
		tb.Fatalf("TEST_MYSQL_URL: %v", err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatalf("TEST_MYSQL_URL: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		testenv.RequireService(tb, "MySQL at TEST_MYSQL_URL does not answer: %v", err)
		return ""
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sb_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name)
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

// PostgresURL creates a database named sb_<random> on the server of
// TEST_POSTGRES_URL and returns its URL; the database is dropped when the
// test ends.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("TEST_POSTGRES_URL")
	if base == "" {
		testenv.RequireService(tb, "TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL variant")
		return ""
	}
	cfg, err := store.PostgresConfig(base, store.DefaultTimeout)
	if err != nil {
		tb.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	admin := stdlib.OpenDB(*cfg)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		testenv.RequireService(tb, "PostgreSQL at TEST_POSTGRES_URL does not answer: %v", err)
		return ""
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sb_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" ENCODING 'UTF8' TEMPLATE template0"); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}
