package chat

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// recentMessages is how many of a room's last messages roomCounts keeps,
// to bring a count read from the database up to date with the messages
// applied while the read ran.
const recentMessages = 256

// behindWait bounds how long a read waits for a room's stream to bring
// its counts up to the last message it read, before counting them again.
const behindWait = 2 * time.Second

// errCountBehind is a count read too long before the stream to be brought
// up to date: the read is tried again (see roomReads).
var errCountBehind = errors.New("chat: unread count read too long ago")

// roomCounts keeps the unread counts and joined flags of the (room, user)
// pairs watched through this replica: a user with a room-list watcher here,
// and a room that changed for them since it started. It is how notify keeps
// unread counts (see notify's unreadCounts), room by room.
//
// A new message is an increment: the replica follows the stream of each
// room with counted pairs (in order, no gap, no duplicate) and adds each
// message to the count of every pair of the room but its author's (whose
// count it zeroes: posting reads the room), without a statement. A pair is
// counted from the database when a change of its room first reaches one of
// the user's watchers, after a read of the room by the user in any tab
// (announced with the user's id: see forget), and after announcements may
// have been lost (forgetAll): in one statement per store.maxInList users of
// a room. Each count is exact at a position of the room's stream
// (store.RoomUnread.Head); the messages applied beyond it are added from
// the recent ones, and those up to it are not added again. A read commits
// before it is announced, and a count that started before the
// announcement is served but not kept, so the count that follows the
// announcement sees it: the last value every watcher gets is right.
type roomCounts struct {
	subscribe func(ctx context.Context, roomID int64) (<-chan *models.Message, error)
	count     func(ctx context.Context, roomID int64, users []int64) ([]store.RoomUnread, error)
	panics    *panics.Guard

	mu       sync.Mutex
	watching map[int64]int // room-list watchers here, by user
	rooms    map[int64]*countedRoom
}

// countedRoom is one room with counted pairs, and its stream's follower.
type countedRoom struct {
	id         int64
	subscribed chan struct{} // closed once the stream is followed (or failed to be)
	err        error         // why it failed, once subscribed is closed
	stop       context.CancelFunc
	recent     *stream.Recent[roomMessage]
	pairs      map[int64]*roomPair // by user
	moved      chan struct{}       // closed and replaced when a message is applied
	// epoch counts the reads announced (see forget); forgot is the epoch
	// of each user's last, all the epoch of the last that named everyone: a
	// count that started before it is not kept.
	epoch  uint64
	forgot map[int64]uint64
	all    uint64
}

// roomMessage is what a count needs of a message.
type roomMessage struct {
	seq    int64
	author int64
	at     time.Time
}

// roomPair is what one user has of a room, exact at position pos of its
// stream.
type roomPair struct {
	user   int64
	unread int
	joined bool
	since  time.Time // the user's creation: older messages do not count
	pos    int64
}

func newRoomCounts(subscribe func(context.Context, int64) (<-chan *models.Message, error),
	count func(context.Context, int64, []int64) ([]store.RoomUnread, error), guard *panics.Guard) *roomCounts {
	return &roomCounts{subscribe: subscribe, count: count, panics: guard, watching: make(map[int64]int), rooms: make(map[int64]*countedRoom)}
}

// watch counts a room-list watcher of userID until the returned func is
// called; when the last one ends, userID's pairs are dropped (and the
// rooms left without pairs stop being followed).
func (rc *roomCounts) watch(userID int64) (end func()) {
	rc.mu.Lock()
	rc.watching[userID]++
	rc.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if rc.watching[userID]--; rc.watching[userID] > 0 {
				return
			}
			delete(rc.watching, userID)
			for _, r := range rc.rooms {
				delete(r.pairs, userID)
				delete(r.forgot, userID)
				if len(r.pairs) == 0 {
					rc.drop(r)
				}
			}
		})
	}
}

// forget drops the pairs of users (everyone's when none) in roomID: their
// read markers changed, so they are counted again at their next read.
func (rc *roomCounts) forget(roomID int64, users []int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.rooms[roomID]
	if r == nil {
		return
	}
	r.epoch++
	if len(users) == 0 {
		clear(r.pairs)
		r.all = r.epoch
		return
	}
	for _, u := range users {
		delete(r.pairs, u)
		r.forgot[u] = r.epoch
	}
}

// forgetAll drops every pair (announcements of reads may have been lost)
// and returns the rooms that had some.
func (rc *roomCounts) forgetAll() []int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ids := make([]int64, 0, len(rc.rooms))
	for id, r := range rc.rooms {
		ids = append(ids, id)
		rc.drop(r)
	}
	return ids
}

// drop stops following r's stream and forgets it. Called with mu held.
func (rc *roomCounts) drop(r *countedRoom) {
	if rc.rooms[r.id] == r {
		delete(rc.rooms, r.id)
	}
	if r.stop != nil {
		r.stop()
	}
}

// roomCount is what a room list shows of one user's pair: the unread
// count and whether the user joined (zero for a user who does not exist).
type roomCount struct {
	unread int
	joined bool
}

// get returns the unread count and joined flag of each of users in roomID,
// by index (a room's change has one for every watcher: a slice, not a map
// per change), each exact at position upTo of its stream or later: the
// pairs counted already as they are, once the stream is applied up to upTo
// (waiting behindWait at most), the others counted in grouped statements,
// and kept when their user watches here.
func (rc *roomCounts) get(ctx context.Context, roomID int64, users []int64, upTo int64) ([]roomCount, error) {
	r, err := rc.follow(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := make([]roomCount, len(users))
	missing := rc.known(ctx, r, users, upTo, out)
	if len(missing) == 0 {
		return out, nil
	}
	rc.mu.Lock()
	started := r.epoch
	rc.mu.Unlock()
	ids := make([]int64, len(missing))
	index := make(map[int64]int, len(missing)) // in users
	for k, i := range missing {
		ids[k], index[users[i]] = users[i], i
	}
	counts, err := rc.count(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range counts {
		since, at, ok := r.recent.After(c.Head)
		if !ok {
			return nil, errCountBehind
		}
		p := &roomPair{user: c.UserID, unread: c.Unread, joined: c.Joined, since: c.Since, pos: c.Head}
		for _, m := range since {
			p.add(m)
		}
		p.pos = at
		if i, ok := index[c.UserID]; ok {
			out[i] = roomCount{unread: p.unread, joined: p.joined}
		}
		keep := rc.rooms[roomID] == r && rc.watching[c.UserID] > 0 && r.pairs[c.UserID] == nil &&
			r.forgot[c.UserID] <= started && r.all <= started
		if keep {
			r.pairs[c.UserID] = p
		}
	}
	if rc.rooms[roomID] == r && len(r.pairs) == 0 {
		rc.drop(r) // counted for nobody who watches here: not followed either
	}
	return out, nil
}

// known sets out[i] to the pair of users[i] when r has counted it, once
// the pairs are exact at upTo or later, and returns the indexes of the
// users it has not. Those that stay behind upTo for behindWait are left to
// count again.
func (rc *roomCounts) known(ctx context.Context, r *countedRoom, users []int64, upTo int64, out []roomCount) (missing []int) {
	deadline := time.NewTimer(behindWait)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		missing = missing[:0]
		behind := false
		for i, u := range users {
			p := r.pairs[u]
			switch {
			case p == nil:
				missing = append(missing, i)
			case p.pos < upTo:
				behind = true
			default:
				out[i] = roomCount{unread: p.unread, joined: p.joined}
			}
			if behind {
				break // wait for the stream before looking at the rest
			}
		}
		moved := r.moved
		rc.mu.Unlock()
		if !behind {
			return missing
		}
		select {
		case <-moved:
			clear(out)
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		// The stream is late: count them all again.
		clear(out)
		missing = missing[:0]
		for i := range users {
			missing = append(missing, i)
		}
		return missing
	}
}

// follow returns roomID's counted room, following its stream from now on
// if it was not.
func (rc *roomCounts) follow(ctx context.Context, roomID int64) (*countedRoom, error) {
	rc.mu.Lock()
	r := rc.rooms[roomID]
	if r == nil {
		r = &countedRoom{
			id: roomID, subscribed: make(chan struct{}), moved: make(chan struct{}),
			recent: stream.NewRecent(recentMessages, func(m roomMessage) int64 { return m.seq }),
			pairs:  make(map[int64]*roomPair), forgot: make(map[int64]uint64),
		}
		rc.rooms[roomID] = r
		rc.mu.Unlock()
		rc.start(r)
	} else {
		rc.mu.Unlock()
	}
	select {
	case <-r.subscribed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r, r.err
}

// start subscribes to r's stream and applies its messages on a goroutine
// of its own, until r is dropped or the feed closes (which drops it).
func (rc *roomCounts) start(r *countedRoom) {
	// Not under the reader's context: the follower serves every watcher of
	// the room, and must carry none of one request's values (a transport's
	// position recorder would take the follower's positions for the
	// request's, and move the request into a group of its own).
	sctx, stop := context.WithCancel(context.Background())
	c, err := rc.subscribe(sctx, r.id)
	rc.mu.Lock()
	r.stop, r.err = stop, err
	if err != nil {
		rc.drop(r)
	}
	rc.mu.Unlock()
	close(r.subscribed)
	if err != nil {
		return
	}
	rc.panics.Go(sctx, whereUnread, func() {
		defer func() {
			rc.mu.Lock()
			rc.drop(r)
			rc.mu.Unlock()
		}()
		rc.panics.Point(whereUnread)
		for m := range c {
			rc.apply(r, m)
		}
	})
}

// whereUnread names the panics of following a room's stream for its
// counts: the room is dropped, and counted again at its next change.
const whereUnread = "chat.unread"

// apply adds m, the next message of r's stream, to r's pairs.
func (rc *roomCounts) apply(r *countedRoom, m *models.Message) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	msg := roomMessage{seq: m.Seq, author: m.AuthorID, at: m.CreatedAt}
	if rc.rooms[r.id] != r || !r.recent.Apply(msg) {
		return
	}
	for _, p := range r.pairs {
		if msg.seq > p.pos {
			p.add(msg)
			p.pos = msg.seq
		}
	}
	close(r.moved)
	r.moved = make(chan struct{})
}

// add counts m, a message after the pair's position, for its user.
func (p *roomPair) add(m roomMessage) {
	switch {
	case m.author == p.user:
		p.unread, p.joined = 0, true // posting reads the room up to the message
	case !m.at.Before(p.since):
		p.unread++
	}
}
