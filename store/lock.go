package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"time"
)

// Lead is the right to run a job that one process of all those sharing the
// database must run (the KPI demo feed).
type Lead struct {
	name    string
	conn    *sql.Conn     // nil on SQLite
	timeout time.Duration // of each statement on conn
}

// TryLead tries to become the process that runs the job name. On MySQL it
// takes an advisory lock named after the job and the database (the server's
// locks are shared by all its databases) on a connection of its own, held
// until Release or until the process dies (the server drops the lock with
// the connection); it returns nil when another process holds it. An
// embedded SQLite database belongs to one process, which always leads.
// Like every statement, it gives up after the store's timeout.
func (db *DB) TryLead(ctx context.Context, name string) (*Lead, error) {
	if db.dialect != MySQL {
		return &Lead{name: name}, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, translate(err, "take lock "+name)
	}
	var database sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&database); err != nil {
		_ = conn.Close()
		return nil, translate(err, "take lock "+name)
	}
	lock := lockName(database.String, name)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil {
		_ = conn.Close()
		return nil, translate(err, "take lock "+name)
	}
	if got.Int64 != 1 {
		_ = conn.Close()
		return nil, nil
	}
	return &Lead{name: lock, conn: conn, timeout: db.timeout}, nil
}

// lockName names the advisory lock of job name in database: MySQL allows
// 64 characters, so a longer name is replaced by its hash.
func lockName(database, name string) string {
	lock := database + "/" + name
	if len(lock) > 64 {
		sum := sha256.Sum256([]byte(lock))
		lock = hex.EncodeToString(sum[:])
	}
	return lock
}

// Held reports whether the lead is still this process's: its connection
// may have been lost, and the lock with it. A database that does not answer
// within the store's timeout has it lost.
func (l *Lead) Held(ctx context.Context) bool {
	if l.conn == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	var mine sql.NullInt64
	err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine)
	return err == nil && mine.Int64 == 1
}

// Release gives the lead up (when the database does not answer within the
// store's timeout, by closing the connection, which drops the lock).
func (l *Lead) Release() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	_, _ = l.conn.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", l.name)
	_ = l.conn.Close()
}
