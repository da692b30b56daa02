package store

import (
	"database/sql/driver"
	"strings"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"gorm.io/gorm"
)

// Names (of users and rooms) compare ignoring case, and only case, on
// every database: "Café" and "CAFÉ" are one room name, "Café" and "Cafe"
// two; a search for "émi" finds "Émile" and not "Emile". Case is Unicode's
// (Go's strings.ToLower, which the databases' LOWER agrees with on a UTF-8
// database), not only ASCII's. Results are ordered by the lowercased name's
// code points, then the name itself. KPI module and key names are
// lowercase ASCII by their pattern (models.KPIName) and compare exactly.
//
// What each database needs for that:
//   - SQLite's LOWER folds ASCII only: sb_lower (strings.ToLower) instead.
//   - MySQL's utf8mb4_unicode_ci also ignores accents (and trailing
//     spaces): comparisons and orders of lowercased names are made
//     utf8mb4_bin, and so is the rooms' uniqueness key (see binaryRoomKey).
//   - PostgreSQL's LOWER is Unicode's on a UTF-8 database (C.UTF-8 and
//     the like: LC_CTYPE decides); orders use the "C" collation, code
//     points, whatever the database's.

func init() {
	sqlitedriver.MustRegisterDeterministicScalarFunction("sb_lower", 1, func(_ *sqlitedriver.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		}
		return args[0], nil // NULL, or not text
	})
}

// nameLike is the condition that column, lowercased, matches a LIKE
// pattern (one argument: lowercase, its wildcards escaped with '!').
func (db *DB) nameLike(column string) string {
	switch db.dialect {
	case SQLite:
		return "sb_lower(" + column + ") LIKE ? ESCAPE '!'"
	case MySQL:
		return "LOWER(" + column + ") LIKE ? COLLATE utf8mb4_bin ESCAPE '!'"
	}
	return "LOWER(" + column + ") LIKE ? ESCAPE '!'"
}

// nameOrder orders by column lowercased, code point by code point.
func (db *DB) nameOrder(column string) string {
	switch db.dialect {
	case SQLite:
		return "sb_lower(" + column + ")"
	case MySQL:
		return "LOWER(" + column + ") COLLATE utf8mb4_bin"
	}
	return `LOWER(` + column + `) COLLATE "C"`
}

// namePattern is the LIKE pattern of the names that contain search,
// ignoring case.
func namePattern(search string) string {
	return "%" + escapeLike(strings.ToLower(search)) + "%"
}

// escapeLike escapes LIKE's wildcards with '!'.
func escapeLike(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// binaryRoomKey makes MySQL compare the rooms' uniqueness keys exactly (they
// are lowercased already: models.PublicRoomKey): under the database's
// utf8mb4_unicode_ci, "name:café" and "name:cafe" would collide. A database
// migrated before has its column changed once.
func binaryRoomKey(g *gorm.DB) error {
	g = g.Session(&gorm.Session{NewDB: true})
	var collation string
	err := g.Raw(`SELECT COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'rooms' AND COLUMN_NAME = 'room_key'`).Scan(&collation).Error
	if err != nil || collation == "utf8mb4_bin" {
		return err
	}
	return g.Exec("ALTER TABLE rooms MODIFY room_key VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL").Error
}
