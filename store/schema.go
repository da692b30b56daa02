package store

import (
	"context"
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

// migrationLock names the MySQL advisory lock that serialises migrations of
// replicas starting together.
const migrationLock = "switchboard.migrate"

// Migrate creates or updates the schema. On MySQL it holds an advisory lock
// meanwhile, so replicas starting together migrate one after the other.
func (db *DB) Migrate(ctx context.Context) error {
	if db.dialect != MySQL {
		return db.migrate(db.gorm.WithContext(ctx))
	}
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return translate(err, "migrate")
	}
	defer conn.Close()
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", migrationLock).Scan(&got); err != nil || got != 1 {
		return fmt.Errorf("migrate: take lock %s (got %d): %w", migrationLock, got, err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", migrationLock)
	}()
	return db.migrate(db.gorm.WithContext(ctx))
}

func (db *DB) migrate(g *gorm.DB) error {
	if db.dialect == MySQL {
		g = g.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
	}
	if err := g.AutoMigrate(tables...); err != nil {
		return translate(err, "migrate")
	}
	if err := ensureGeneralRoom(g); err != nil {
		return translate(err, "create the general room")
	}
	if err := backfillActivity(g); err != nil {
		return translate(err, "record the rooms' activity")
	}
	return db.ensureStream(g.Statement.Context, models.StatusStream)
}
