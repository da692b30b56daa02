package store

import (
	"context"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/switchboardhq/switchboard/models"
)

// RoomListQuery asks for one page of a room list.
type RoomListQuery struct {
	// Viewer is who looks: they see the public rooms and their direct
	// rooms; 0 is an anonymous caller, who sees the public rooms.
	Viewer int64
	// Search keeps the rooms whose name contains it, case-insensitively
	// (a direct room's name is its other member's); "" keeps every room.
	Search string
	// AsOf is the list's moment: when its first page was read.
	AsOf time.Time
	// After is the place of the previous page's last room; nil for the
	// first page.
	After *models.RoomPlace
	// Limit is the most rooms the page holds.
	Limit int
}

// listSettle is how long before its moment a room list takes the rooms'
// activity: a message is committed moments after its time (see
// CreateMessage), and one still committing when a page was read must not
// move a room between that page's place and the next's.
const listSettle = time.Second

// ListRooms returns a page of the rooms q.Viewer sees, in the order of
// models.RoomPlace, as the list was at q.AsOf: the rooms created by then,
// each placed by whether the viewer had joined it by then and by its
// activity as of listSettle before then. Later messages, reads and rooms
// change no place, so the pages of one list (one AsOf), each read after the
// previous one's last place, hold every room of the list once, whatever
// happens meanwhile. A page costs a few queries, each reading at most
// Limit rooms by the rooms' listing index (or the viewer's own rooms).
func (db *DB) ListRooms(ctx context.Context, q RoomListQuery) ([]models.ListedRoom, error) {
	asOf := q.AsOf.UTC().Truncate(time.Millisecond)
	var out []models.ListedRoom
	for _, joined := range []bool{true, false} {
		if joined && q.Viewer == 0 {
			continue // nobody joined: every room is among the rest
		}
		after := q.After
		if after != nil && after.Joined != joined {
			if !after.Joined {
				continue // past the joined rooms already
			}
			after = nil // the joined rooms are done: the rest from the start
		}
		n := q.Limit - len(out)
		if n <= 0 {
			break
		}
		part, err := db.listPart(ctx, q, asOf, joined, after, n)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	return out, nil
}

// listPart returns up to limit rooms of the joined part of a room list (or
// of the rest) after place after. Rooms quiet since the list's activity
// time are placed by their activity, read by the listing index; the few
// active since, by their newest message at that time.
func (db *DB) listPart(ctx context.Context, q RoomListQuery, asOf time.Time, joined bool, after *models.RoomPlace, limit int) ([]models.ListedRoom, error) {
	activeBy := asOf.Add(-listSettle)
	var quiet []*models.Room
	query := db.roomList(ctx, q, asOf, joined).Where("rooms.active_at <= ?", activeBy)
	if after != nil {
		// The first term bounds the index range (MySQL's planner needs it).
		query = query.Where("rooms.active_at <= ? AND (rooms.active_at < ? OR rooms.id < ?)", after.ActiveAt, after.ActiveAt, after.ID)
	}
	if err := query.Order("rooms.active_at DESC, rooms.id DESC").Limit(limit).Find(&quiet).Error; err != nil {
		return nil, translate(err, "list rooms")
	}
	normalizeRooms(quiet)

	// A room active since is placed by its newest message then (times
	// follow positions in a room), else by its creation.
	const placedAt = "COALESCE(lm.created_at, rooms.created_at)"
	var active []struct {
		models.Room
		LastAt *time.Time
	}
	query = db.roomList(ctx, q, asOf, joined).Select("rooms.*, lm.created_at AS last_at").
		Joins(`LEFT JOIN messages lm ON lm.room_id = rooms.id AND lm.seq = (SELECT m.seq FROM messages m
			WHERE m.room_id = rooms.id AND m.created_at <= ? ORDER BY m.seq DESC LIMIT 1)`, activeBy).
		Where("rooms.active_at > ?", activeBy)
	if after != nil {
		query = query.Where("("+placedAt+" < ? OR ("+placedAt+" = ? AND rooms.id < ?))", after.ActiveAt, after.ActiveAt, after.ID)
	}
	if err := query.Order(placedAt + " DESC, rooms.id DESC").Limit(limit).Scan(&active).Error; err != nil {
		return nil, translate(err, "list active rooms")
	}

	out := make([]models.ListedRoom, 0, len(quiet)+len(active))
	for _, r := range quiet {
		out = append(out, models.ListedRoom{Room: r, Place: models.RoomPlace{Joined: joined, ActiveAt: r.ActiveAt, ID: r.ID}})
	}
	for i := range active {
		r := &active[i].Room
		normalizeRooms([]*models.Room{r})
		at := r.CreatedAt
		if last := active[i].LastAt; last != nil {
			at = last.UTC()
		}
		out = append(out, models.ListedRoom{Room: r, Place: models.RoomPlace{Joined: joined, ActiveAt: at, ID: r.ID}})
	}
	slices.SortFunc(out, func(a, b models.ListedRoom) int {
		if a.Place.Before(b.Place) {
			return -1
		}
		return 1
	})
	return out[:min(limit, len(out))], nil
}

// roomList selects the rooms of the joined part (or of the rest) of
// q.Viewer's room list at asOf that match q.Search.
func (db *DB) roomList(ctx context.Context, q RoomListQuery, asOf time.Time, joined bool) *gorm.DB {
	g := db.gorm.WithContext(ctx).Model(&models.Room{}).Where("rooms.created_at <= ?", asOf)
	const joinedPublic = "SELECT room_id FROM room_reads WHERE user_id = ? AND (joined_at IS NULL OR joined_at <= ?)"
	switch {
	case joined:
		// Driven by the viewer's own rows: their direct rooms, and the
		// rooms they had joined by asOf (only members read a direct room).
		g = g.Joins("JOIN (SELECT room_id FROM room_members WHERE user_id = ? UNION "+joinedPublic+") mine ON mine.room_id = rooms.id",
			q.Viewer, q.Viewer, asOf)
	case q.Viewer != 0:
		g = g.Where("rooms.direct = ? AND rooms.id NOT IN ("+joinedPublic+")", false, q.Viewer, asOf)
	default:
		g = g.Where("rooms.direct = ?", false)
	}
	if q.Search != "" {
		pattern := namePattern(q.Search)
		g = g.Where(`(`+db.nameLike("rooms.name")+` OR (rooms.direct = ? AND EXISTS (SELECT 1 FROM room_members sm
			JOIN users su ON su.id = sm.user_id WHERE sm.room_id = rooms.id AND sm.user_id <> ? AND `+db.nameLike("su.name")+`)))`,
			pattern, true, q.Viewer, pattern)
	}
	return g
}
