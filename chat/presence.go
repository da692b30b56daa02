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

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
)

// Presence tracks who is online in each room. A user is online in a room
// while at least one Join for them is not yet left: every subscription of a
// room's messages or presence joins, so several tabs count once and the
// user goes offline when the last one ends. A vanished client's
// subscriptions end when the keepalive drops its connection.
type Presence struct {
	mu    sync.Mutex
	rooms map[int64]*presenceRoom
}

type presenceRoom struct {
	online   []*models.User // in the order they came online
	joins    map[int64]int  // user id → joins not yet left
	watchers map[*live.Latest[*models.Presence]]struct{}
}

// NewPresence returns an empty presence tracker.
func NewPresence() *Presence { return &Presence{rooms: make(map[int64]*presenceRoom)} }

func (p *Presence) room(id int64) *presenceRoom {
	r := p.rooms[id]
	if r == nil {
		r = &presenceRoom{joins: make(map[int64]int), watchers: make(map[*live.Latest[*models.Presence]]struct{})}
		p.rooms[id] = r
	}
	return r
}

// forget drops a room's entry once nobody is online or watching.
func (p *Presence) forget(id int64, r *presenceRoom) {
	if len(r.joins) == 0 && len(r.watchers) == 0 {
		delete(p.rooms, id)
	}
}

// Join counts u online in room until ctx ends.
func (p *Presence) Join(ctx context.Context, roomID int64, u *models.User) {
	p.mu.Lock()
	r := p.room(roomID)
	r.joins[u.ID]++
	if r.joins[u.ID] == 1 {
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
	if r.joins[userID] == 0 {
		delete(r.joins, userID)
		r.online = slices.DeleteFunc(r.online, func(u *models.User) bool { return u.ID == userID })
		p.changed(roomID, r)
	}
	p.forget(roomID, r)
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
