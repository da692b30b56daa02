package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Lead is the right to run a job that one process of all those sharing the
// database must run (the KPI demo feed).
type Lead struct {
	name    string
	conn    *sql.Conn     // nil on SQLite
	locks   advisoryLocks // the database's statements for its lock
	timeout time.Duration // of each statement on conn
}

// advisoryLocks are a database's statements for an advisory lock held by a
// session (a connection): try takes it without waiting and answers 1 or
// true when it did, held answers 1 or true while this session holds it,
// release gives it up. Each takes the lock's name (MySQL) or key
// (PostgreSQL) as its one argument.
type advisoryLocks struct {
	database, try, held, release string
	key                          func(name string) any
}

// locksOf returns dialect's advisory-lock statements; SQLite has none.
func locksOf(dialect Dialect) (advisoryLocks, bool) {
	switch dialect {
	case MySQL:
		return advisoryLocks{
			database: "SELECT DATABASE()",
			try:      "SELECT GET_LOCK(?, 0)",
			held:     "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
			release:  "SELECT RELEASE_LOCK(?)",
			key:      func(name string) any { return name },
		}, true
	case Postgres:
		// A lock's key is a bigint; one made of two halves shows in
		// pg_locks as classid (high) and objid (low), objsubid 1.
		return advisoryLocks{
			database: "SELECT current_database()",
			try:      "SELECT pg_try_advisory_lock($1)",
			held: `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
				AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1)`,
			release: "SELECT pg_advisory_unlock($1)",
			key:     advisoryKey,
		}, true
	}
	return advisoryLocks{}, false
}

// advisoryKey is the PostgreSQL advisory lock key of name: the first 8
// bytes of its SHA-256.
func advisoryKey(name string) any {
	sum := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// TryLead tries to become the process that runs the job name. On MySQL and
// PostgreSQL it takes an advisory lock named after the job and the database
// (the server's locks are shared by all its databases) on a connection of
// its own, held until Release or until the process dies (the server drops
// the lock with the connection); it returns nil when another process holds
// it. An embedded SQLite database belongs to one process, which always
// leads. Like every statement, it gives up after the store's timeout.
func (db *DB) TryLead(ctx context.Context, name string) (*Lead, error) {
	locks, ok := locksOf(db.dialect)
	if !ok {
		return &Lead{name: name}, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, translate(err, "take lock "+name)
	}
	var database sql.NullString
	if err := conn.QueryRowContext(ctx, locks.database).Scan(&database); err != nil {
		_ = conn.Close()
		return nil, translate(err, "take lock "+name)
	}
	lock := lockName(database.String, name)
	var got sql.NullBool
	if err := conn.QueryRowContext(ctx, locks.try, locks.key(lock)).Scan(&got); err != nil {
		_ = conn.Close()
		return nil, translate(err, "take lock "+name)
	}
	if !got.Bool {
		_ = conn.Close()
		return nil, nil
	}
	return &Lead{name: lock, conn: conn, locks: locks, timeout: db.timeout}, nil
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
	var mine sql.NullBool
	err := l.conn.QueryRowContext(ctx, l.locks.held, l.locks.key(l.name)).Scan(&mine)
	return err == nil && mine.Bool
}

// Release gives the lead up (when the database does not answer within the
// store's timeout, by closing the connection, which drops the lock).
func (l *Lead) Release() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	_, _ = l.conn.ExecContext(ctx, l.locks.release, l.locks.key(l.name))
	_ = l.conn.Close()
}
