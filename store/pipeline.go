package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
)

// Append batches in two round trips on MySQL.
//
// A stream's appends commit one batch after another, each holding the
// stream's head row from the moment it moves the head until its COMMIT
// (see appenders): the round trips a batch makes are what a stream's rate
// comes to. Run one statement at a time, a batch of messages makes six
// (START TRANSACTION, move the head, insert the messages, the room's
// activity, the authors' read marks, COMMIT), each waiting for the
// database to answer. On MySQL, a batch is sent instead as two
// multi-statement queries: what comes before the positions are known
// (START TRANSACTION, the keys' claims, moving the head, which answers the
// new head), then everything else with COMMIT at its end. MySQL runs a
// multi-statement query in order and stops at its first failing statement,
// so a batch whose write fails never reaches its COMMIT, and is rolled
// back.
//
// The statements are the ones GORM builds, as for the other databases:
// they run on a batchConn, which holds them back until the batch needs an
// answer. Their arguments are written into the query's text by the driver
// (interpolateParams, escaped as for any statement), and only the pool of
// connections that runs these batches has multiStatements on: the
// server's other statements never run more than one statement a query.

// pipelinedConns is the most connections the pool that runs append
// batches holds open: one per stream whose batch commits at the moment.
const pipelinedConns = 16

// errPipelined is the error of a prepared statement asked of a batchConn:
// a batch's statements carry their arguments in their text.
var errPipelined = errors.New("a statement of an append batch cannot be prepared")

// batchConn is a gorm.ConnPool on one connection that holds the statements
// executed on it until flush sends them as one query; a query for rows
// first sends those held.
type batchConn struct {
	conn  *sql.Conn
	query strings.Builder
	args  []any
	err   error // of a flush a query made, returned by the next flush
}

// heldResult is the result of a statement held back: whoever needs a
// statement's result flushes it.
type heldResult struct{}

func (heldResult) LastInsertId() (int64, error) { return 0, nil }
func (heldResult) RowsAffected() (int64, error) { return 0, nil }

// hold adds a statement to those flush sends next.
func (b *batchConn) hold(query string, args ...any) {
	if b.query.Len() > 0 {
		b.query.WriteString(";\n")
	}
	b.query.WriteString(query)
	b.args = append(b.args, args...)
}

// flush sends the statements held as one query and returns the result of
// the last one (an error if a statement failed: those after it did not
// run).
func (b *batchConn) flush(ctx context.Context) (sql.Result, error) {
	if b.err != nil {
		return nil, b.err
	}
	query, args := b.query.String(), b.args
	b.query.Reset()
	b.args = nil
	if query == "" {
		return heldResult{}, nil
	}
	return b.conn.ExecContext(ctx, query, args...)
}

func (b *batchConn) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	b.hold(query, args...)
	return heldResult{}, nil
}

func (b *batchConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if _, err := b.flush(ctx); err != nil {
		return nil, err
	}
	return b.conn.QueryContext(ctx, query, args...)
}

func (b *batchConn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if _, err := b.flush(ctx); err != nil {
		b.err = err
	}
	return b.conn.QueryRowContext(ctx, query, args...)
}

func (b *batchConn) PrepareContext(context.Context, string) (*sql.Stmt, error) {
	return nil, errPipelined
}

// commitPipelined commits batch as commitAppends does, in two round trips
// on a connection of db.pipelined (see above).
func (db *DB) commitPipelined(ctx context.Context, stream string, batch []*appendReq) (err error) {
	conn, err := db.pipelined.Conn(ctx)
	if err != nil {
		db.errs.failed(err)
		return err
	}
	b := &batchConn{conn: conn}
	defer func() {
		if err != nil {
			db.errs.failed(err)
			db.rollback(conn)
		}
		_ = conn.Close()
	}()
	tx := db.gorm.WithContext(ctx)
	tx.Statement.ConnPool = b
	b.hold("START TRANSACTION")
	if err := claimAll(tx, batch); err != nil {
		return err
	}
	if err := moveHead(tx, stream, len(batch)).Error; err != nil {
		return err
	}
	res, err := b.flush(ctx)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("stream %q has no row", stream)
	}
	last, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if err := writeBatch(tx, batch, last); err != nil {
		return err
	}
	b.hold("COMMIT")
	_, err = b.flush(ctx)
	return err
}

// rollback ends the transaction open on conn, if any; a connection that
// cannot is not used again.
func (db *DB) rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}
