// Package chat keeps the live, non-durable state of chat rooms: who is
// online in each room (presence), who is typing, and which users' room lists
// changed. Messages themselves are durable and go through package stream.
//
// Everything here lives in the process. Each kind of state is a
// latest-value or best-effort stream (see PRODUCT.md): a watcher receives
// the current value first and then every change, and a slow watcher may skip
// intermediate values but never ends with a stale one.
package chat

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
)

// Presence tracks who is online in each room. A user is online in a room
// while at least one Join for them is not yet left: every subscription of a
// room's messages or presence joins, so several tabs count once and the
// user goes offline when the last one ends. A vanished client's
// subscriptions end when the keepalive drops its connection.
//
// Going offline waits a short grace period, and a join within it cancels
// the leave: a reloaded page, a reconnect, or a subscription handing over to
// a shared one does not make the user flicker offline and back.
type Presence struct {
	grace time.Duration

	mu    sync.Mutex
	rooms map[int64]*presenceRoom
}

type presenceRoom struct {
	online   []*models.User        // in the order they came online
	joins    map[int64]int         // user id → joins not yet left
	leaving  map[int64]*time.Timer // users with no join left, until grace ends
	watchers map[*live.Latest[*models.Presence]]struct{}
}

// DefaultLeaveGrace is how long a user stays online after their last
// subscription ended.
const DefaultLeaveGrace = 2 * time.Second

// NewPresence returns an empty presence tracker whose users go offline
// grace after their last join ends (at once for 0).
func NewPresence(grace time.Duration) *Presence {
	return &Presence{grace: grace, rooms: make(map[int64]*presenceRoom)}
}

func (p *Presence) room(id int64) *presenceRoom {
	r := p.rooms[id]
	if r == nil {
		r = &presenceRoom{joins: make(map[int64]int), leaving: make(map[int64]*time.Timer), watchers: make(map[*live.Latest[*models.Presence]]struct{})}
		p.rooms[id] = r
	}
	return r
}

// forget drops a room's entry once nobody is online or watching.
func (p *Presence) forget(id int64, r *presenceRoom) {
	if len(r.joins) == 0 && len(r.leaving) == 0 && len(r.watchers) == 0 {
		delete(p.rooms, id)
	}
}

// Join counts u online in room until ctx ends.
func (p *Presence) Join(ctx context.Context, roomID int64, u *models.User) {
	p.mu.Lock()
	r := p.room(roomID)
	r.joins[u.ID]++
	if t := r.leaving[u.ID]; t != nil {
		t.Stop() // back within the grace period: still online, no change
		delete(r.leaving, u.ID)
	} else if r.joins[u.ID] == 1 {
		r.online = append(r.online, u)
		p.changed(roomID, r)
	}
	p.mu.Unlock()
	context.AfterFunc(ctx, func() { p.leave(roomID, u.ID) })
}

func (p *Presence) leave(roomID, userID int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rooms[roomID]
	if r == nil || r.joins[userID] == 0 {
		return
	}
	r.joins[userID]--
	if r.joins[userID] > 0 {
		return
	}
	delete(r.joins, userID)
	if p.grace <= 0 {
		p.offline(roomID, r, userID)
		return
	}
	var t *time.Timer
	t = time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r.leaving[userID] == t {
			delete(r.leaving, userID)
			p.offline(roomID, r, userID)
			p.forget(roomID, r)
		}
	})
	r.leaving[userID] = t
	p.forget(roomID, r)
}

// offline takes userID off the room's list. Called with p.mu held.
func (p *Presence) offline(roomID int64, r *presenceRoom, userID int64) {
	r.online = slices.DeleteFunc(r.online, func(u *models.User) bool { return u.ID == userID })
	p.changed(roomID, r)
}

// changed sends the room's new list to its watchers. Called with p.mu held.
func (p *Presence) changed(roomID int64, r *presenceRoom) {
	if len(r.watchers) == 0 {
		return
	}
	ev := &models.Presence{RoomID: roomID, Users: slices.Clone(r.online)}
	for w := range r.watchers {
		w.Set(ev)
	}
}

// Online returns who is online in room now.
func (p *Presence) Online(roomID int64) []*models.User {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[roomID]; r != nil {
		return slices.Clone(r.online)
	}
	return []*models.User{}
}

// Watch returns the room's online list: the current one at once, then a
// new one after every change, until ctx ends.
func (p *Presence) Watch(ctx context.Context, roomID int64) <-chan *models.Presence {
	w := live.NewLatest[*models.Presence]()
	p.mu.Lock()
	r := p.room(roomID)
	r.watchers[w] = struct{}{}
	w.Set(&models.Presence{RoomID: roomID, Users: slices.Clone(r.online)})
	p.mu.Unlock()
	go w.Run(ctx, func() {
		p.mu.Lock()
		delete(r.watchers, w)
		p.forget(roomID, r)
		p.mu.Unlock()
	})
	return w.C()
}
