package store_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/internal/faultproxy"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// stallTimeout is the store's timeout in the tests of a database that
// does not answer; stallMargin what an answer may take beyond it.
const (
	stallTimeout = 500 * time.Millisecond
	stallMargin  = 500 * time.Millisecond
)

// TestStalledDatabaseIsUnavailableInTime: a MySQL server that stops
// answering (the network path holds every byte) fails every operation with
// UNAVAILABLE within the store's timeout: reads, writes in a transaction,
// pings, and the callers beyond the pool's size that wait for a connection.
// Once it answers again, the same store works without being reopened.
func TestStalledDatabaseIsUnavailableInTime(t *testing.T) {
	t.Parallel()
	db, proxy := openBehindProxy(t, store.Options{Timeout: stallTimeout})
	ada := newUser(t, db, "ada")

	proxy.Stall()
	ops := map[string]func(ctx context.Context) error{
		"read": func(ctx context.Context) error { _, err := db.User(ctx, ada.ID); return err },
		"write": func(ctx context.Context) error {
			_, _, err := db.CreateStatus(ctx, ada, "stalled", time.Now(), nil)
			return err
		},
		"ping": db.Ping,
	}
	var wg sync.WaitGroup
	for i := range 50 { // more than the pool's 32 connections
		for name, op := range ops {
			wg.Go(func() {
				start := time.Now()
				err := op(context.Background())
				took := time.Since(start)
				assert.Equal(t, models.Unavailable, models.ErrorCode(err), "%s %d: %v", name, i, err)
				assert.Less(t, took, stallTimeout+stallMargin, "%s %d answers within the timeout", name, i)
			})
		}
	}
	wg.Wait()

	proxy.Forward()
	require.Eventually(t, func() bool {
		_, _, err := db.CreateStatus(t.Context(), ada, "after", time.Now(), nil)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "writes succeed again once the database answers")
	got, err := db.User(t.Context(), ada.ID)
	require.NoError(t, err)
	assert.Equal(t, "ada", got.Name)
}

// TestRequestDeadlineWins: a caller's deadline shorter than the store's
// timeout is the one kept.
func TestRequestDeadlineWins(t *testing.T) {
	t.Parallel()
	db, proxy := openBehindProxy(t, store.Options{Timeout: time.Minute})
	ada := newUser(t, db, "ada")

	proxy.Stall()
	defer proxy.Forward()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := db.User(ctx, ada.ID)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "%v", err)
	assert.Less(t, time.Since(start), 200*time.Millisecond+stallMargin)
}

// TestLockedSQLiteIsUnavailableInTime: an SQLite database another process
// keeps locked for writing fails a write with UNAVAILABLE once the busy
// timeout (the store's timeout) has passed, not after a fixed 10 s.
func TestLockedSQLiteIsUnavailableInTime(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "switchboard.db")
	db := openWith(t, "sqlite:"+path, store.Options{Timeout: stallTimeout})
	other, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate")
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	tx, err := other.Begin() // BEGIN IMMEDIATE: the write lock, held
	require.NoError(t, err)

	start := time.Now()
	_, err = db.CreateUser(t.Context(), "ada")
	took := time.Since(start)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "%v", err)
	assert.GreaterOrEqual(t, took, stallTimeout, "it waited for the lock")
	assert.Less(t, took, stallTimeout+stallMargin)

	require.NoError(t, tx.Rollback())
	_, err = db.CreateUser(t.Context(), "ada")
	assert.NoError(t, err, "writes succeed once the lock is released")
}

// openWith opens and migrates the store at rawURL with opts, closed when
// the test ends.
func openWith(tb testing.TB, rawURL string, opts store.Options) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), rawURL, opts)
	require.NoError(tb, err, "open store")
	tb.Cleanup(func() { assert.NoError(tb, db.Close(), "close store") })
	require.NoError(tb, db.Migrate(context.Background()), "migrate")
	return db
}

// openBehindProxy opens and migrates a store with opts on a fresh MySQL
// database reached through a fault proxy.
func openBehindProxy(tb testing.TB, opts store.Options) (*store.DB, *faultproxy.Proxy) {
	tb.Helper()
	return openBehindProxyWith(tb, "", opts)
}

// openBehindProxyWith is openBehindProxy with query as the URL's query
// (driver parameters).
func openBehindProxyWith(tb testing.TB, query string, opts store.Options) (*store.DB, *faultproxy.Proxy) {
	tb.Helper()
	u, err := url.Parse(storetest.MySQLURL(tb))
	require.NoError(tb, err)
	proxy := faultproxy.Start(tb, u.Host)
	u.Host = proxy.Addr()
	u.RawQuery = query
	return openWith(tb, u.String(), opts), proxy
}

// TestDriverTalksToTheStoreLog: what the MySQL driver logs by itself (here
// a read that timed out on a database that stopped answering) goes to the
// store's logger at debug level, not to standard error.
func TestDriverTalksToTheStoreLog(t *testing.T) {
	t.Parallel()
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The driver's own timeout ends the read, and says so.
	db, proxy := openBehindProxyWith(t, "readTimeout=200ms", store.Options{Timeout: 5 * time.Second, Log: log})

	proxy.Stall()
	defer proxy.Forward()
	err := db.Ping(t.Context())
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "%v", err)
	assert.Regexp(t, `level=DEBUG msg="mysql driver" said=".*i/o timeout"`, logs.String())
}
