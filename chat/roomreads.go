package chat

import (
	"context"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// roomReads reads a changed room once for all the room-list watchers of
// their own (RoomEvents.Watch) the change concerns, whatever their number:
// a message in a public room wakes every signed-in watcher, and each
// reading the room, its unread count and its last message for itself
// cost statements per watcher (and batching loads by time only gathered
// those that happened to ask within a few milliseconds of each other).
// (The watcher of every list, which serves shared deliveries, reads its
// changes for all their users itself: see Service.readAll.)
//
// Each change of a room starts a generation of it, naming the users it
// concerns (and those of the previous generation still waiting for
// theirs: the newer read serves them too). The first watcher to ask reads
// the generation for all its users at once (see Service.readRoom); the
// others take their part. A read that failed is read again by the first
// watcher to ask roomRetry later, still once for all.
type roomReads struct {
	read func(ctx context.Context, roomID int64, users []int64) (map[int64]*models.Room, error)

	mu    sync.Mutex
	rooms map[int64]*roomRead // the current generation of each room with watchers waiting
}

// roomRead is one generation of a room.
type roomRead struct {
	reading  sync.Mutex // held by the watcher that reads, and by those waiting for its read
	mu       sync.Mutex // guards the fields below; never held while reading
	waiting  map[int64]bool
	done     bool
	asked    map[int64]bool         // the users read, once done
	seen     map[int64]*models.Room // by user, once done
	err      error
	failedAt time.Time
}

// readTimeout bounds one read, which serves many watchers: none of their
// contexts may end it.
const readTimeout = 10 * time.Second

func newRoomReads(read func(ctx context.Context, roomID int64, users []int64) (map[int64]*models.Room, error)) *roomReads {
	return &roomReads{read: read, rooms: make(map[int64]*roomRead)}
}

// changed starts a new generation of roomID for users.
func (rr *roomReads) changed(roomID int64, users []int64) {
	if len(users) == 0 {
		return
	}
	next := &roomRead{waiting: make(map[int64]bool, len(users))}
	for _, u := range users {
		next.waiting[u] = true
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if prev := rr.rooms[roomID]; prev != nil {
		prev.mu.Lock()
		for u := range prev.waiting {
			next.waiting[u] = true
		}
		prev.mu.Unlock()
	}
	rr.rooms[roomID] = next
}

// get returns roomID as userID sees it, read after the latest change that
// concerns userID; models.NotFound when the user may not see it.
func (rr *roomReads) get(ctx context.Context, roomID, userID int64) (*models.Room, error) {
	rr.mu.Lock()
	g := rr.rooms[roomID]
	rr.mu.Unlock()
	if g != nil {
		if room, ok, err := rr.take(ctx, roomID, userID, g); ok {
			return room, err
		}
	}
	// No change names the user (a retry, or another tab of theirs took
	// their part of the last one): a read of their own.
	room, _, err := rr.take(ctx, roomID, userID, &roomRead{waiting: make(map[int64]bool)})
	return room, err
}

// take returns userID's part of generation g, reading it for every user
// waiting when it is not read yet; ok is false when g was read without
// userID.
func (rr *roomReads) take(ctx context.Context, roomID, userID int64, g *roomRead) (room *models.Room, ok bool, err error) {
	g.reading.Lock()
	defer g.reading.Unlock()
	g.mu.Lock()
	if g.done && !g.asked[userID] {
		g.mu.Unlock()
		return nil, false, nil
	}
	g.waiting[userID] = true
	err = rr.readLocked(ctx, roomID, g)
	if err == nil {
		delete(g.waiting, userID)
		room = g.seen[userID]
	}
	g.mu.Unlock()
	if err != nil {
		return nil, true, err
	}
	rr.forget(roomID, g)
	if room == nil {
		return nil, true, models.Errorf(models.NotFound, "room %d not found", roomID)
	}
	return room, true, nil
}

// readLocked reads generation g for every user waiting, unless it is read
// already or its last read failed less than roomRetry ago, and returns the
// error of its last read. Called with g.reading and g.mu held; g.mu is let
// go during the read.
func (rr *roomReads) readLocked(ctx context.Context, roomID int64, g *roomRead) error {
	if !g.done && (g.err == nil || time.Since(g.failedAt) >= roomRetry) {
		users := make([]int64, 0, len(g.waiting))
		asked := make(map[int64]bool, len(g.waiting))
		for u := range g.waiting {
			users = append(users, u)
			asked[u] = true
		}
		g.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
		seen, err := rr.read(rctx, roomID, users)
		cancel()
		g.mu.Lock()
		g.seen, g.asked, g.err, g.done = seen, asked, err, err == nil
		if err != nil {
			g.failedAt = time.Now()
		}
	}
	return g.err
}

// forget drops g once every watcher has taken its part, unless a newer
// generation replaced it. Called without g.mu: the locks are taken in the
// order rr.mu, then a generation's mu (as changed does).
func (rr *roomReads) forget(roomID int64, g *roomRead) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.rooms[roomID] != g {
		return
	}
	g.mu.Lock()
	taken := len(g.waiting) == 0
	g.mu.Unlock()
	if taken {
		delete(rr.rooms, roomID)
	}
}
