// Package store is Switchboard's persistence: one DB type over GORM that runs
// on the embedded pure-Go SQLite (the default) or on MySQL/MariaDB, chosen by
// the DATABASE_URL scheme. It owns the schema and its migrations, and turns
// driver errors into *models.Error values that name the operation and carry
// a domain code (models.NotFound, models.Unavailable) with the driver's
// error as their cause, so that nothing above it needs to know which
// database it talks to and the log still says what the database said.
//
// Durable streams (the status feed, each chat room, the notifications)
// are numbered here. Each stream has a row in the streams table holding its
// head; appending takes that row's lock, increments it and writes the event
// under the new number in the same transaction. The lock is held until
// commit, so numbers are handed out in commit order: whoever reads event N
// can already read every event before it. Auto-increment keys do not give
// that (two transactions may commit ids 11 and 10 in that order, and a
// reader that saw 11 first would skip 10 forever); this is the ordering that
// makes resume-with-after gap-free across processes.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	mysqldriver "github.com/go-sql-driver/mysql"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/switchboardhq/switchboard/models"
)

// Dialect names the database behind a DB.
type Dialect string

// The supported databases.
const (
	SQLite   Dialect = "sqlite"
	MySQL    Dialect = "mysql"
	Postgres Dialect = "postgres"
)

// DB is the store. It is safe for concurrent use; Close releases it.
type DB struct {
	gorm      *gorm.DB
	sql       *sql.DB
	pipelined *sql.DB // MySQL's append batches (see commitPipelined), or nil
	dialect   Dialect

	timeout time.Duration // of every statement (see Options)

	streams sync.Map                      // stream names known to have a row
	rooms   *lru.Cache[int64, *roomFacts] // see RoomToWrite
	appends appenders
	errs    errorCounts
}

// Open connects to the database named by rawURL: "sqlite:PATH" for the
// embedded database (its directory is created when missing),
// "mysql://user:password@host:3306/dbname?param=value" or
// "postgres://user:password@host:5432/dbname?param=value" (also
// postgresql://). Every statement
// then runs under opts.Timeout (see Options). It does not migrate; call
// Migrate.
func Open(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	dialector, dialect, pipelined, err := dialectorFor(rawURL, opts)
	if err != nil {
		return nil, err
	}
	closePipelined := func() {
		if pipelined != nil {
			_ = pipelined.Close()
		}
	}
	g, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
		SkipDefaultTransaction: true,
		TranslateError:         true,
	})
	if err != nil {
		if d, ok := dialector.(*mysql.Dialector); ok {
			_ = d.Conn.(*sql.DB).Close()
		}
		closePipelined()
		if isConnectionError(err) { // the MySQL dialector connects before Ping does
			return nil, unavailable(fmt.Sprintf("open %s database", dialect), err)
		}
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		closePipelined()
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	switch dialect {
	case SQLite:
		// One writer at a time is SQLite's rule; _txlock=immediate makes
		// writers queue on the busy timeout (the store's timeout) instead of
		// failing at once, and WAL lets readers proceed meanwhile.
		sqlDB.SetMaxOpenConns(8)
		sqlDB.SetMaxIdleConns(8)
	case MySQL, Postgres:
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(16)
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	}
	rooms, err := lru.New[int64, *roomFacts](knownRooms)
	if err != nil {
		_ = sqlDB.Close()
		closePipelined()
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	db := &DB{gorm: g, sql: sqlDB, pipelined: pipelined, dialect: dialect, timeout: opts.Timeout, rooms: rooms}
	if err := errors.Join(db.boundStatements(), db.countErrors()); err != nil {
		_ = db.closePools()
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if err := db.Ping(ctx); err != nil {
		_ = db.closePools()
		return nil, err
	}
	return db, nil
}

// dialectorFor translates a DATABASE_URL into a GORM dialector whose
// driver waits for the database no longer than opts.Timeout and says what
// it has to say in opts.Log, and, on MySQL with interpolateParams, the
// pool that runs append batches (see commitPipelined; nil otherwise).
func dialectorFor(rawURL string, opts Options) (gorm.Dialector, Dialect, *sql.DB, error) {
	timeout := opts.Timeout
	switch {
	case strings.HasPrefix(rawURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "//")
		if path == "" {
			return nil, "", nil, errors.New("DATABASE_URL sqlite: needs a file path, e.g. sqlite:./data/switchboard.db")
		}
		if path != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return nil, "", nil, fmt.Errorf("create database directory: %w", err)
			}
		}
		dsn := "file:" + path + "?_txlock=immediate" +
			fmt.Sprintf("&_pragma=busy_timeout(%d)", max(1, timeout.Milliseconds())) + "&_pragma=journal_mode(WAL)" +
			"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
		return sqlite.Open(dsn), SQLite, nil, nil
	case strings.HasPrefix(rawURL, "mysql://"):
		dsn, err := MySQLDSN(rawURL, timeout)
		if err != nil {
			return nil, "", nil, err
		}
		cfg, err := mysqldriver.ParseDSN(dsn)
		if err != nil {
			return nil, "", nil, err
		}
		cfg.Logger = driverLog{opts.Log}
		connector, err := mysqldriver.NewConnector(cfg)
		if err != nil {
			return nil, "", nil, err
		}
		var pipelined *sql.DB
		if cfg.InterpolateParams {
			multi := cfg.Clone()
			multi.MultiStatements = true
			c, err := mysqldriver.NewConnector(multi)
			if err != nil {
				return nil, "", nil, err
			}
			pipelined = sql.OpenDB(c)
			pipelined.SetMaxOpenConns(pipelinedConns)
			pipelined.SetMaxIdleConns(pipelinedConns / 4)
			pipelined.SetConnMaxLifetime(30 * time.Minute)
		}
		return mysql.New(mysql.Config{Conn: sql.OpenDB(connector), DefaultStringSize: 191}), MySQL, pipelined, nil
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		cfg, err := PostgresConfig(rawURL, timeout)
		if err != nil {
			return nil, "", nil, err
		}
		return postgres.New(postgres.Config{Conn: stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(scanTimesInUTC))}), Postgres, nil, nil
	default:
		return nil, "", nil, fmt.Errorf("DATABASE_URL must start with sqlite:, mysql:// or postgres:// (got %q)", redact(rawURL))
	}
}

// scanTimesInUTC makes conn read timestamptz values in UTC, as the other
// databases' drivers do (pgx's default is the process's local zone).
func scanTimesInUTC(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	return nil
}

// PostgresConfig translates postgres://user:password@host:port/dbname?param=value
// (or postgresql://) into pgx's configuration: the URL's parameters as
// pgx reads them (sslmode, connect_timeout, …), with the session's time
// zone UTC, and timeout as connect_timeout unless the URL sets it. A
// statement's own deadline (the store's timeout) cancels it on the server.
func PostgresConfig(rawURL string, timeout time.Duration) (*pgx.ConnConfig, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL is not a valid URL: %w", errors.Unwrap(err))
	}
	if u.Host == "" {
		return nil, errors.New("DATABASE_URL postgres:// needs a host, e.g. postgres://postgres@127.0.0.1:5432/switchboard?sslmode=disable")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db == "" || strings.Contains(db, "/") {
		return nil, errors.New("DATABASE_URL postgres:// needs a database name as its path, e.g. postgres://postgres@127.0.0.1:5432/switchboard?sslmode=disable")
	}
	q := u.Query()
	if !q.Has("connect_timeout") {
		q.Set("connect_timeout", strconv.Itoa(max(1, int(timeout.Round(time.Second).Seconds()))))
	}
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL postgres://: %w", err)
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	return cfg, nil
}

// MySQLDSN translates mysql://user:password@host:port/dbname?param=value into
// the MySQL driver's DSN, always with parseTime, utf8mb4 and UTC, and with
// timeout as the driver's dial, read and write timeouts unless the URL sets
// them (timeout, readTimeout, writeTimeout), and with interpolateParams
// unless the URL sets it. Query parameters are passed to the driver
// unchanged, except parseTime and loc, which are ignored.
//
// The read and write timeouts bound what the driver does without a
// context (COMMIT, ROLLBACK, the handshake of a connection the pool opens
// by itself): without them, a database that stops answering would hold
// those forever.
func MySQLDSN(rawURL string, timeout time.Duration) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is not a valid URL: %w", errors.Unwrap(err))
	}
	if u.Host == "" {
		return "", errors.New("DATABASE_URL mysql:// needs a host, e.g. mysql://root@127.0.0.1:3306/switchboard")
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if dbName == "" || strings.Contains(dbName, "/") {
		return "", errors.New("DATABASE_URL mysql:// needs a database name as its path, e.g. mysql://root@127.0.0.1:3306/switchboard")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg := mysqldriver.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = host
	cfg.DBName = dbName
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Collation = "utf8mb4_unicode_ci"
	params := map[string]string{"charset": "utf8mb4"}
	for k, vs := range u.Query() {
		if len(vs) > 0 {
			params[k] = vs[len(vs)-1]
		}
	}
	// Statements carry their arguments in their text, escaped by the driver
	// (for utf8mb4, which is safe to escape: the driver refuses this with
	// the few character sets that are not): one round trip per statement
	// instead of three (prepare, execute, close). An append batch holds its
	// stream's head row through each of them, so this is what its rate
	// comes to (docs/performance.md). interpolateParams=false in the URL
	// turns it off.
	if _, set := params["interpolateParams"]; !set {
		cfg.InterpolateParams = true
	}
	for k, d := range map[string]*time.Duration{"timeout": &cfg.Timeout, "readTimeout": &cfg.ReadTimeout, "writeTimeout": &cfg.WriteTimeout} {
		if _, set := params[k]; !set {
			*d = timeout
		}
	}
	if err := cfg.Apply(mysqldriver.Charset(params["charset"], cfg.Collation)); err != nil {
		return "", err
	}
	delete(params, "charset")
	// parseTime and loc stay as set above (GORM's example DSN has loc=Local).
	delete(params, "parseTime")
	delete(params, "loc")
	cfg.Params = params
	return cfg.FormatDSN(), nil
}

// driverLog passes what the MySQL driver logs by itself (a connection that
// timed out or that the server closed, whose statement's own error reaches
// its caller anyway) to the store's logger at debug level, instead of the
// driver's default: standard error, unstructured.
type driverLog struct{ log *slog.Logger }

func (l driverLog) Print(v ...any) {
	if l.log != nil {
		l.log.Debug("mysql driver", "said", strings.TrimSpace(fmt.Sprint(v...)))
	}
}

// redact hides a URL's password.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Dialect reports which database the store talks to.
func (db *DB) Dialect() Dialect { return db.dialect }

// Ping checks that the database answers, within the store's timeout; it
// fails with models.Unavailable.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if err := db.sql.PingContext(ctx); err != nil {
		return unavailable(fmt.Sprintf("ping %s", db.dialect), err)
	}
	return nil
}

// OpenConnections returns how many connections to the database are open,
// in use or idle: at most the pools' sizes (MaxConnections).
func (db *DB) OpenConnections() int {
	n := db.sql.Stats().OpenConnections
	if db.pipelined != nil {
		n += db.pipelined.Stats().OpenConnections
	}
	return n
}

// MaxConnections is the most connections to the database the store opens:
// its pool's size, and on MySQL that of the pool for append batches.
func (db *DB) MaxConnections() int {
	n := db.sql.Stats().MaxOpenConnections
	if db.pipelined != nil {
		n += db.pipelined.Stats().MaxOpenConnections
	}
	return n
}

// Close closes the database connections.
func (db *DB) Close() error {
	err := db.closePools()
	db.appends.running.Wait() // their batches fail at once on a closed pool
	return err
}

// closePools closes the database's connection pools.
func (db *DB) closePools() error {
	err := db.sql.Close()
	if db.pipelined != nil {
		err = errors.Join(err, db.pipelined.Close())
	}
	return err
}

// translate turns err, a failure of the store operation op (lowercase
// words: "create message"), into a *models.Error of op that wraps err, so
// that errors.Is still finds the driver's error and models.ErrorCode the
// domain code: a lost connection or one that did not answer in time is
// models.Unavailable, a missing row
// models.NotFound, anything else has no code (internal, unless err's chain
// carries one). A nil err stays nil.
func translate(err error, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return models.E(op, models.NotFound, err, "not found")
	case isConnectionError(err):
		return unavailable(op, err)
	default:
		return &models.Error{Op: op, Err: err}
	}
}

// translateFind is translate for the lookup of one kind of thing ("room")
// by id: a missing one is models.NotFound, "room 5 not found".
func translateFind(err error, kind string, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return models.E("find "+kind, models.NotFound, err, "%s %d not found", kind, id)
	}
	return translate(err, fmt.Sprintf("find %s %d", kind, id))
}

// unavailable is the error of the operation op that could not reach the
// database (the cause err): models.Unavailable for the client, the cause
// for the log.
func unavailable(op string, err error) error {
	return models.E(op, models.Unavailable, err, "the database is unavailable, try again later")
}

// isConnectionError reports whether err says that the database could not
// be reached, or did not answer in time: a lost or refused connection, a
// deadline that passed (the statement's, or the wait for a connection of
// the pool), SQLite's busy timeout or a statement it interrupted at the
// deadline.
func isConnectionError(err error) bool {
	var netErr net.Error
	var liteErr *sqlitedriver.Error
	var pgErr *pgconn.PgError
	var pgConnect *pgconn.ConnectError
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysqldriver.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) ||
		(errors.As(err, &liteErr) && slices.Contains([]int{sqliteBusy, sqliteInterrupt}, liteErr.Code()&0xff)) ||
		errors.As(err, &pgConnect) || pgconn.Timeout(err) ||
		(errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == pgQueryCanceled))
}

// PostgreSQL's SQLSTATEs the store tells apart (besides its classes 08,
// connection exceptions, and 57P, a server shutting down or starting).
const (
	pgQueryCanceled        = "57014" // by the statement's deadline: the database did not answer in time
	pgSerializationFailure = "40001"
	pgDeadlock             = "40P01"
)

// SQLite's primary result codes for a database locked past the busy
// timeout and a statement interrupted (at its context's end).
const (
	sqliteBusy      = 5
	sqliteInterrupt = 9
)

// ensureStream creates the streams row of name unless it is known to exist.
func (db *DB) ensureStream(ctx context.Context, name string) error {
	if _, ok := db.streams.Load(name); ok {
		return nil
	}
	err := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&stream{Name: name}).Error
	if err != nil {
		return translate(err, "create stream "+name)
	}
	db.streams.Store(name, struct{}{})
	return nil
}

// appendPosition takes the lock of stream name inside tx and returns the next
// position. The lock is held until tx ends, so positions are committed in
// order.
func appendPosition(tx *gorm.DB, name string) (int64, error) { return appendPositions(tx, name, 1) }

// appendPositions takes the lock of stream name inside tx, moves its head
// by n and returns the last of the n positions taken (the first is n-1
// before it).
func appendPositions(tx *gorm.DB, name string, n int) (int64, error) {
	if tx.Dialector.Name() == "postgres" {
		// One statement: the UPDATE answers the new head.
		var heads []int64
		if err := tx.Raw("UPDATE streams SET head = head + ? WHERE name = ? RETURNING head", n, name).Scan(&heads).Error; err != nil {
			return 0, err
		}
		if len(heads) != 1 {
			return 0, fmt.Errorf("stream %q has no row", name)
		}
		return heads[0], nil
	}
	mysql := tx.Dialector.Name() == "mysql"
	result := gorm.WithResult()
	res := moveHead(tx.Clauses(result), name, n)
	if res.Error != nil {
		return 0, res.Error
	}
	if res.RowsAffected != 1 {
		return 0, fmt.Errorf("stream %q has no row", name)
	}
	if mysql {
		return result.Result.LastInsertId()
	}
	var s stream
	if err := tx.Where("name = ?", name).Take(&s).Error; err != nil {
		return 0, err
	}
	return s.Head, nil
}

// moveHead moves stream name's head by n inside tx, taking its lock. On
// MySQL the UPDATE also answers the new head, as the insert id that
// LAST_INSERT_ID(expr) sets: one statement instead of two, under the head
// row's lock, which every append of the stream waits for.
func moveHead(tx *gorm.DB, name string, n int) *gorm.DB {
	moved := gorm.Expr("head + ?", n)
	if tx.Dialector.Name() == "mysql" {
		moved = gorm.Expr("LAST_INSERT_ID(head + ?)", n)
	}
	return tx.Model(&stream{}).Where("name = ?", name).UpdateColumn("head", moved)
}

// Head returns the position of the newest committed event of the stream
// name, 0 for an empty or unknown stream. Every event up to it is readable.
func (db *DB) Head(ctx context.Context, name string) (int64, error) {
	var heads []int64
	err := db.gorm.WithContext(ctx).Model(&stream{}).Where("name = ?", name).Limit(1).Pluck("head", &heads).Error
	if err != nil {
		return 0, translate(err, "read head of stream "+name)
	}
	if len(heads) == 0 {
		return 0, nil
	}
	return heads[0], nil
}

// isWriteConflict reports whether err aborted a transaction only because a
// concurrent one won: a deadlock (MySQL, PostgreSQL), a serialization
// failure (PostgreSQL), or a row inserted meanwhile.
func isWriteConflict(err error) bool {
	var me *mysqldriver.MySQLError
	var pgErr *pgconn.PgError
	return errors.Is(err, gorm.ErrDuplicatedKey) || (errors.As(err, &me) && me.Number == 1213) ||
		(errors.As(err, &pgErr) && (pgErr.Code == pgDeadlock || pgErr.Code == pgSerializationFailure))
}

// maxConflictAttempts bounds how often retryConflicts runs a write.
const maxConflictAttempts = 5

// retryConflicts runs write again, up to maxConflictAttempts times in all,
// while the database aborts it for a conflict with a concurrent write.
func retryConflicts(write func() error) error {
	var err error
	for range maxConflictAttempts {
		if err = write(); err == nil || !isWriteConflict(err) {
			break
		}
	}
	return err
}
