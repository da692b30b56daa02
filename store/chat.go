package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/switchboardhq/switchboard/models"
)

// ensureGeneralRoom creates the general room on a fresh database.
func ensureGeneralRoom(g *gorm.DB) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	room := &models.Room{Name: models.GeneralRoom, Key: models.PublicRoomKey(models.GeneralRoom), CreatedAt: now, ActiveAt: now}
	return g.Clauses(clause.OnConflict{DoNothing: true}).Create(room).Error
}

// backfillActivity sets the activity of the rooms that have none yet (made
// before rooms recorded it: their ActiveAt is the column's default, before
// their creation) to their newest message's time, else their creation.
func backfillActivity(g *gorm.DB) error {
	return g.Exec(`UPDATE rooms SET active_at = COALESCE(
		(SELECT m.created_at FROM messages m WHERE m.room_id = rooms.id ORDER BY m.seq DESC LIMIT 1),
		created_at) WHERE active_at < created_at`).Error
}

// CreateRoom creates a public room named name (already validated), which
// creatorID (0: nobody) has joined from the start. A name in use
// (case-insensitive) is a models.BadUserInput error.
func (db *DB) CreateRoom(ctx context.Context, name string, creatorID int64, now time.Time) (*models.Room, error) {
	now = now.UTC().Truncate(time.Millisecond)
	room := &models.Room{Name: name, Key: models.PublicRoomKey(name), CreatedAt: now, ActiveAt: now}
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(room).Error; err != nil {
			return err
		}
		if creatorID == 0 {
			return nil
		}
		return markRead(tx, creatorID, room.ID, 0, now)
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return nil, models.Errorf(models.BadUserInput, "a room named %q exists already", name)
	}
	if err != nil {
		return nil, translate(err, "create room")
	}
	return room, nil
}

// Room returns the room with the given id, or a models.NotFound error.
func (db *DB) Room(ctx context.Context, id int64) (*models.Room, error) {
	var r models.Room
	if err := db.gorm.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, translateFind(err, "room", id)
	}
	normalizeRooms([]*models.Room{&r})
	return &r, nil
}

// RoomFor returns room id if userID may see it: a public room for anyone
// (userID 0 is an anonymous caller), a direct room only for its members.
// Anything else is the same models.NotFound error as a missing room.
func (db *DB) RoomFor(ctx context.Context, id, userID int64) (*models.Room, error) {
	r, err := db.Room(ctx, id)
	if err != nil {
		return nil, err
	}
	if !r.Direct {
		return r, nil
	}
	f, err := db.factsOf(ctx, id, r) // its members never change
	if err != nil {
		return nil, err
	}
	if !f.mayAccess(userID) {
		return nil, models.Errorf(models.NotFound, "room %d not found", id)
	}
	return r, nil
}

// roomFacts is what never changes of a room once it is created: a room is
// never renamed or deleted, and a direct room's members are written with
// it; only its ActiveAt moves, and a copy's is as it was when first read.
type roomFacts struct {
	room    models.Room
	members []int64 // a direct room's members, in id order; nil for a public room
}

// mayAccess reports whether userID (0: an anonymous caller) may see the room.
func (f *roomFacts) mayAccess(userID int64) bool {
	return !f.room.Direct || userID != 0 && slices.Contains(f.members, userID)
}

// knownRooms caches the facts of rooms by id, so that a write to a room
// (a message, a typing indicator) checks its access without a statement.
// Missing rooms are not cached: a later room may take their id.
const knownRooms = 4096

// RoomToWrite is RoomFor for a write to the room: it answers from the
// room's facts (roomFacts) when this process has read them before, so its
// ActiveAt may be older than the database's. members are a direct room's
// two member ids (nil for a public room), which a write announces to.
func (db *DB) RoomToWrite(ctx context.Context, id, userID int64) (room *models.Room, members []int64, err error) {
	f, err := db.factsOf(ctx, id, nil)
	if err != nil {
		return nil, nil, err
	}
	if !f.mayAccess(userID) {
		return nil, nil, models.Errorf(models.NotFound, "room %d not found", id)
	}
	r := f.room
	return &r, slices.Clone(f.members), nil
}

// factsOf returns the facts of room id, kept or else read (from read, the
// room's row when the caller has it, and for a direct room its members)
// and kept.
func (db *DB) factsOf(ctx context.Context, id int64, read *models.Room) (*roomFacts, error) {
	if f, ok := db.rooms.Get(id); ok {
		return f, nil
	}
	r := read
	if r == nil {
		var err error
		if r, err = db.Room(ctx, id); err != nil {
			return nil, err
		}
	}
	f := &roomFacts{room: *r}
	if r.Direct {
		err := db.gorm.WithContext(ctx).Model(&models.RoomMember{}).
			Where("room_id = ?", id).Order("user_id").Pluck("user_id", &f.members).Error
		if err != nil {
			return nil, translate(err, "read room members")
		}
	}
	db.rooms.Add(id, f)
	return f, nil
}

// DirectRoom returns the direct room of users a and b, or a
// models.NotFound error when it was never opened.
func (db *DB) DirectRoom(ctx context.Context, a, b int64) (*models.Room, error) {
	var r models.Room
	err := db.gorm.WithContext(ctx).Take(&r, "room_key = ?", models.DirectRoomKey(a, b)).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, models.Errorf(models.NotFound, "no direct room of users %d and %d", a, b)
	}
	if err != nil {
		return nil, translate(err, "find direct room")
	}
	normalizeRooms([]*models.Room{&r})
	return &r, nil
}

// OpenDirectRoom returns the direct room of users a and b, creating it on
// first use. Concurrent first uses end with the same room. created says
// whether this call created it.
func (db *DB) OpenDirectRoom(ctx context.Context, a, b *models.User, now time.Time) (room *models.Room, created bool, err error) {
	if r, err := db.DirectRoom(ctx, a.ID, b.ID); err == nil || models.ErrorCode(err) != models.NotFound {
		return r, false, err
	}
	now = now.UTC().Truncate(time.Millisecond)
	room = &models.Room{Name: "", Direct: true, Key: models.DirectRoomKey(a.ID, b.ID), CreatedAt: now, ActiveAt: now}
	err = db.transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(room).Error; err != nil {
			return err
		}
		return tx.Create([]models.RoomMember{{RoomID: room.ID, UserID: a.ID}, {RoomID: room.ID, UserID: b.ID}}).Error
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		r, err := db.DirectRoom(ctx, a.ID, b.ID) // the other side opened it at the same moment
		return r, false, err
	}
	if err != nil {
		return nil, false, translate(err, "create direct room")
	}
	return room, true, nil
}

// RoomMembers returns the members of each direct room of roomIDs, ordered
// by id, in a query per maxInList rooms; public rooms, which have none, are
// left out.
func (db *DB) RoomMembers(ctx context.Context, roomIDs []int64) (map[int64][]*models.User, error) {
	out := make(map[int64][]*models.User)
	err := chunked(roomIDs, func(ids []int64) error {
		var rows []struct {
			RoomID int64
			models.User
		}
		err := db.gorm.WithContext(ctx).Table("room_members").
			Select("room_members.room_id AS room_id, users.*").
			Joins("JOIN users ON users.id = room_members.user_id").
			Where("room_members.room_id IN ?", ids).
			Order("room_members.room_id, users.id").Scan(&rows).Error
		if err != nil {
			return translate(err, "list room members")
		}
		for i := range rows {
			u := rows[i].User
			u.CreatedAt = u.CreatedAt.UTC()
			out[rows[i].RoomID] = append(out[rows[i].RoomID], &u)
		}
		return nil
	})
	return out, err
}

// CreateMessage appends a message by author (text already validated) to
// room's stream, marks the room read for the author up to it and makes it
// the room's latest activity; concurrent posts to a room are committed
// together (see appendOnce). The message's time is read from now once its
// position is taken, so that within a room times follow positions (on one
// clock) and a message is committed moments after its time. With a key
// (nil: none), the message and the key are committed together; a key that
// a concurrent request committed first rolls this message back, and the
// message returned is that request's: replayed is true (see once).
func (db *DB) CreateMessage(ctx context.Context, room *models.Room, author *models.User, text string, now func() time.Time, key *models.Idempotency) (m *models.Message, replayed bool, err error) {
	name := models.RoomStream(room.ID)
	if err := db.ensureStream(ctx, name); err != nil {
		return nil, false, err
	}
	m = &models.Message{RoomID: room.ID, Text: text, AuthorID: author.ID, Author: author}
	place := func(pos int64) { m.Seq, m.CreatedAt = pos, now().UTC().Truncate(time.Millisecond) }
	insert := appendWrite{key: "insert", item: m, run: insertEvents[*models.Message]}
	// The room's activity is the last message's of a batch; each author has
	// read up to their last message of it.
	active := appendWrite{key: "active", run: func(tx *gorm.DB, _ []any) error {
		return tx.Model(&models.Room{}).Where("id = ?", room.ID).Update("active_at", m.CreatedAt).Error
	}}
	read := appendWrite{key: "read", item: m, run: func(tx *gorm.DB, items []any) error {
		return db.markReadBy(tx, items)
	}}
	replayed, err = appendOnce(ctx, db, name, key, now(), &m, place, insert, active, read)
	if err != nil {
		return nil, false, translate(err, "create message")
	}
	return m, replayed, nil
}

// markReadBy records that the author of each message (a batch of one
// room's, by position) has read the room up to it, in one statement: see
// markRead.
func (db *DB) markReadBy(tx *gorm.DB, messages []any) error {
	last := make(map[int64]*models.Message)
	var authors []int64
	for _, it := range messages {
		m := it.(*models.Message)
		if last[m.AuthorID] == nil {
			authors = append(authors, m.AuthorID)
		}
		last[m.AuthorID] = m
	}
	reads := make([]*models.RoomRead, len(authors))
	for i, a := range authors {
		m := last[a]
		at := m.CreatedAt.UTC().Truncate(time.Millisecond)
		reads[i] = &models.RoomRead{UserID: a, RoomID: m.RoomID, Seq: m.Seq, JoinedAt: &at}
	}
	newSeq := "excluded.seq"
	if db.dialect == MySQL {
		newSeq = "VALUES(seq)"
	}
	return tx.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "user_id"}, {Name: "room_id"}},
		DoUpdates: clause.Set{{Column: clause.Column{Name: "seq"}, Value: gorm.Expr("CASE WHEN " + newSeq + " > room_reads.seq THEN " + newSeq + " ELSE room_reads.seq END")}},
	}).Create(reads).Error
}

// markRead records that userID has read room up to seq (never backwards);
// a first read joins the room at now.
func markRead(tx *gorm.DB, userID, roomID, seq int64, now time.Time) error {
	now = now.UTC().Truncate(time.Millisecond)
	return tx.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "user_id"}, {Name: "room_id"}},
		DoUpdates: clause.Set{{Column: clause.Column{Name: "seq"}, Value: gorm.Expr("CASE WHEN ? > room_reads.seq THEN ? ELSE room_reads.seq END", seq, seq)}},
	}).Create(&models.RoomRead{UserID: userID, RoomID: roomID, Seq: seq, JoinedAt: &now}).Error
}

// MarkRoomRead records that userID has read every message of room (and so
// joined it, at now if not before).
func (db *DB) MarkRoomRead(ctx context.Context, userID, roomID int64, now time.Time) error {
	head, err := db.Head(ctx, models.RoomStream(roomID))
	if err != nil {
		return err
	}
	if err := markRead(db.gorm.WithContext(ctx), userID, roomID, head, now); err != nil {
		return translate(err, "mark room read")
	}
	return nil
}

// UnreadCounts returns, for each room and user of keys, how many of the
// room's messages the user has not read and did not post; before a user
// first reads a room, the messages posted since the user was created count.
// Keys with none are left out. Keys are counted in groups whose rooms and
// users pair up to exactly those keys (see pairGroups), maxInList rooms by
// maxInList users per query: a user's room list (one user, many rooms) and
// a room's watchers (one room, many users) are a few queries each, and
// asked together they do not multiply.
func (db *DB) UnreadCounts(ctx context.Context, keys []models.RoomUser) (map[models.RoomUser]int, error) {
	out := make(map[models.RoomUser]int)
	err := forPairs(keys, func(rooms, users []int64) error {
		var rows []struct {
			UserID, RoomID int64
			N              int
		}
		err := db.gorm.WithContext(ctx).Table("users").
			Select("users.id AS user_id, messages.room_id AS room_id, COUNT(*) AS n").
			Joins("JOIN messages ON messages.room_id IN ? AND messages.author_id <> users.id AND messages.created_at >= users.created_at", rooms).
			Joins("LEFT JOIN room_reads ON room_reads.room_id = messages.room_id AND room_reads.user_id = users.id").
			Where("users.id IN ? AND messages.seq > COALESCE(room_reads.seq, 0)", users).
			Group("users.id, messages.room_id").Scan(&rows).Error
		if err != nil {
			return translate(err, "count unread messages")
		}
		for _, r := range rows {
			out[models.RoomUser{Room: r.RoomID, User: r.UserID}] = r.N
		}
		return nil
	})
	return out, err
}

// RoomUnread is what a user has of a room, exact at position Head of the
// room's stream: how many of its messages up to Head the user has not read
// and did not post (of those posted since Since, the user's creation), and
// whether the user has joined it (created, posted to or read it).
type RoomUnread struct {
	UserID int64
	Unread int
	Joined bool
	Since  time.Time
	Head   int64
}

// roomUnreadQuery counts the unread messages of one room for several users
// and reads whether each joined it, with the room stream's head: one
// statement sees one snapshot, so the counts hold exactly the messages up
// to that position.
const roomUnreadQuery = `SELECT users.id AS user_id, users.created_at AS since,
 (SELECT COUNT(*) FROM messages m WHERE m.room_id = ? AND m.author_id <> users.id
   AND m.created_at >= users.created_at AND m.seq > COALESCE(r.seq, 0)) AS unread,
 CASE WHEN r.user_id IS NULL THEN 0 ELSE 1 END AS joined,
 COALESCE((SELECT head FROM streams WHERE name = ?), 0) AS head
FROM users LEFT JOIN room_reads r ON r.room_id = ? AND r.user_id = users.id
WHERE users.id IN ?`

// RoomUnreads returns what each of users (those that exist) has of room
// roomID, in one statement per maxInList users, each exact at the position
// of the room's stream it names (see RoomUnread): the reads that chat's
// incremental unread counts start from.
func (db *DB) RoomUnreads(ctx context.Context, roomID int64, users []int64) ([]RoomUnread, error) {
	out := make([]RoomUnread, 0, len(users))
	err := chunked(users, func(ids []int64) error {
		var rows []RoomUnread
		err := db.gorm.WithContext(ctx).Raw(roomUnreadQuery, roomID, models.RoomStream(roomID), roomID, ids).Scan(&rows).Error
		if err != nil {
			return translate(err, "count unread messages of a room")
		}
		for i := range rows {
			rows[i].Since = rows[i].Since.UTC()
		}
		out = append(out, rows...)
		return nil
	})
	return out, err
}

// Joined returns which keys' users have joined their public room (created,
// posted to or read it), in groups as UnreadCounts; the others are left
// out. A direct room's members are in it from the start: ask RoomFor.
func (db *DB) Joined(ctx context.Context, keys []models.RoomUser) (map[models.RoomUser]bool, error) {
	out := make(map[models.RoomUser]bool)
	err := forPairs(keys, func(rooms, users []int64) error {
		var rows []models.RoomRead
		err := db.gorm.WithContext(ctx).Select("user_id", "room_id").
			Where("room_id IN ? AND user_id IN ?", rooms, users).Find(&rows).Error
		if err != nil {
			return translate(err, "list joined rooms")
		}
		for _, r := range rows {
			out[models.RoomUser{Room: r.RoomID, User: r.UserID}] = true
		}
		return nil
	})
	return out, err
}

// Rooms returns the rooms of ids that exist, by id, in a query per
// maxInList ids.
func (db *DB) Rooms(ctx context.Context, ids []int64) (map[int64]*models.Room, error) {
	out := make(map[int64]*models.Room, len(ids))
	err := chunked(ids, func(ids []int64) error {
		var rooms []*models.Room
		if err := db.gorm.WithContext(ctx).Where("id IN ?", ids).Find(&rooms).Error; err != nil {
			return translate(err, "list rooms")
		}
		normalizeRooms(rooms)
		for _, r := range rooms {
			out[r.ID] = r
		}
		return nil
	})
	return out, err
}

func normalizeRooms(rooms []*models.Room) {
	for _, r := range rooms {
		r.CreatedAt, r.ActiveAt = r.CreatedAt.UTC(), r.ActiveAt.UTC()
	}
}

// MessagesAfter returns up to limit messages of room after position after,
// oldest first, with their authors: the replay of messageAdded.
func (db *DB) MessagesAfter(ctx context.Context, roomID, after int64, limit int) ([]*models.Message, error) {
	var out []*models.Message
	err := db.gorm.WithContext(ctx).Preload("Author").
		Where("room_id = ? AND seq > ?", roomID, after).Order("seq ASC").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, translate(err, "list messages")
	}
	normalizeMessages(out)
	return out, nil
}

// MessagesBefore returns up to limit messages of room before position
// before (any when before is 0), newest first, with their authors.
func (db *DB) MessagesBefore(ctx context.Context, roomID, before int64, limit int) ([]*models.Message, error) {
	var out []*models.Message
	q := db.gorm.WithContext(ctx).Preload("Author").Where("room_id = ?", roomID).Order("seq DESC").Limit(limit)
	if before > 0 {
		q = q.Where("seq < ?", before)
	}
	if err := q.Find(&out).Error; err != nil {
		return nil, translate(err, "list messages")
	}
	normalizeMessages(out)
	return out, nil
}

// LastMessages returns the newest message of each room of roomIDs, with its
// author, in a query per maxInList rooms: the message at each room's
// highest position. Rooms without messages are left out.
func (db *DB) LastMessages(ctx context.Context, roomIDs []int64) (map[int64]*models.Message, error) {
	out := make(map[int64]*models.Message, len(roomIDs))
	err := chunked(roomIDs, func(ids []int64) error {
		g := db.gorm.WithContext(ctx)
		newest := g.Model(&models.Message{}).Select("room_id, MAX(seq)").Where("room_id IN ?", ids).Group("room_id")
		var last []*models.Message
		if err := g.Preload("Author").Where("(room_id, seq) IN (?)", newest).Find(&last).Error; err != nil {
			return translate(err, "list the rooms' last messages")
		}
		normalizeMessages(last)
		for _, m := range last {
			out[m.RoomID] = m
		}
		return nil
	})
	return out, err
}

func normalizeMessages(ms []*models.Message) {
	for _, m := range ms {
		m.CreatedAt = m.CreatedAt.UTC()
		if m.Author != nil {
			m.Author.CreatedAt = m.Author.CreatedAt.UTC()
		}
	}
}

func normalizeUsers(us []*models.User) {
	for _, u := range us {
		u.CreatedAt = u.CreatedAt.UTC()
	}
}

// SearchUsers returns up to limit users whose name contains search
// (ignoring case: see names.go), by name, leaving out the user except.
func (db *DB) SearchUsers(ctx context.Context, search string, limit int, except int64) ([]*models.User, error) {
	var out []*models.User
	err := db.gorm.WithContext(ctx).Where(db.nameLike("name")+" AND id <> ?", namePattern(search), except).
		Order(db.nameOrder("name") + ", name, id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, translate(err, "search users")
	}
	normalizeUsers(out)
	return out, nil
}

// MessageLog reads room streams for stream.Feed.
type MessageLog struct{ db *DB }

// MessageLog returns the room streams' reader.
func (db *DB) MessageLog() MessageLog { return MessageLog{db: db} }

// Head returns the position of the newest committed message of a room stream.
func (l MessageLog) Head(ctx context.Context, stream string) (int64, error) {
	return l.db.Head(ctx, stream)
}

// After returns up to limit messages of a room stream after position after.
func (l MessageLog) After(ctx context.Context, stream string, after int64, limit int) ([]*models.Message, error) {
	roomID, ok := models.RoomOfStream(stream)
	if !ok {
		return nil, fmt.Errorf("%q is not a room stream", stream)
	}
	return l.db.MessagesAfter(ctx, roomID, after, limit)
}
