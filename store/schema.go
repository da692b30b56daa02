package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/switchboardhq/switchboard/models"
)

// stream is the head of one durable stream: the position of its newest
// committed event.
type stream struct {
	Name string `gorm:"primaryKey;size:191"`
	Head int64  `gorm:"not null;default:0"`
}

// setting is a named server-wide value kept in the database, such as the
// generated token signing key.
type setting struct {
	Name      string `gorm:"primaryKey;size:191"`
	Value     []byte `gorm:"not null"`
	CreatedAt time.Time
}

// tables lists what Migrate creates or updates, in dependency order.
var tables = []any{
	&stream{}, &setting{}, &models.User{}, &models.Status{},
	&models.Room{}, &models.RoomMember{}, &models.RoomRead{}, &models.Message{},
	&models.KPI{}, &models.KPISample{}, &models.Notification{}, &models.NotificationRead{},
	&models.SessionRecord{}, &idempotencyKey{},
}

// migrationLock names the advisory lock (MySQL, PostgreSQL) that
// serialises migrations of replicas starting together.
const migrationLock = "switchboard.migrate"

// How long Migrate waits for another replica's migration, asking every
// migrationPoll (each ask is one statement under the store's timeout).
const (
	migrationWait = time.Minute
	migrationPoll = 200 * time.Millisecond
)

// Migrate creates or updates the schema. On MySQL and PostgreSQL it holds
// an advisory lock meanwhile, so replicas starting together migrate one
// after the other.
// Each statement runs under the store's timeout, the schema changes too: a
// change to a large table that needs longer needs a longer timeout for that
// start.
func (db *DB) Migrate(ctx context.Context) error {
	locks, ok := locksOf(db.dialect)
	if !ok {
		return db.migrate(db.gorm.WithContext(ctx))
	}
	connCtx, cancel := db.bound(ctx)
	conn, err := db.sql.Conn(connCtx)
	cancel()
	if err != nil {
		return translate(err, "migrate")
	}
	defer conn.Close()
	if err := db.waitLock(ctx, conn, locks, migrationLock, migrationWait); err != nil {
		return err
	}
	defer func() {
		release, cancel := db.bound(context.WithoutCancel(ctx))
		defer cancel()
		_, _ = conn.ExecContext(release, locks.release, locks.key(migrationLock))
	}()
	return db.migrate(db.gorm.WithContext(ctx))
}

// waitLock takes the advisory lock name on conn, asking every
// migrationPoll until wait has passed: a server-side wait as long as that
// would outlast the driver's read timeout.
func (db *DB) waitLock(ctx context.Context, conn *sql.Conn, locks advisoryLocks, name string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ask, cancel := db.bound(ctx)
		var got sql.NullBool
		err := conn.QueryRowContext(ask, locks.try, locks.key(name)).Scan(&got)
		cancel()
		switch {
		case err != nil:
			return translate(err, "migrate: take lock "+name)
		case got.Bool:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("migrate: lock %s still held by another process after %s", name, wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate: take lock %s: %w", name, ctx.Err())
		case <-time.After(migrationPoll):
		}
	}
}

func (db *DB) migrate(g *gorm.DB) error {
	if db.dialect == MySQL {
		g = g.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
	}
	if err := g.AutoMigrate(tables...); err != nil {
		return translate(err, "migrate")
	}
	if db.dialect == MySQL {
		if err := binaryRoomKey(g); err != nil {
			return translate(err, "migrate: compare room names exactly")
		}
	}
	if err := ensureGeneralRoom(g); err != nil {
		return translate(err, "create the general room")
	}
	if err := backfillActivity(g); err != nil {
		return translate(err, "record the rooms' activity")
	}
	return db.ensureStream(g.Statement.Context, models.StatusStream)
}
