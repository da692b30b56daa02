package chat

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
)

// wherePresence names the panics of presence's timers and watchers.
const wherePresence = "chat.presence"

// Presence tracks who is online in each room. A user is online in a room
// while at least one Join for them is not yet left: every subscription of a
// room's messages or presence joins, so several tabs count once and the
// user goes offline when the last one ends. A vanished client's
// subscriptions end when the keepalive drops its connection.
//
// Going offline waits a short grace period, and a join within it cancels
// the leave: a reloaded page, a reconnect, or a subscription handing over to
// a shared one does not make the user flicker offline and back.
//
// Other replicas' users come in through ApplyRemote (see hub): a room's
// list is this replica's users, in the order they came online, then the
// other replicas' users not already in it.
type Presence struct {
	grace    time.Duration
	interval time.Duration // see DefaultPresenceInterval

	mu       sync.Mutex
	rooms    map[int64]*presenceRoom
	replicas map[string]time.Time // other replicas heard from → when their state expires
	dirty    map[int64]bool       // rooms whose local list changed since TakeDirty
	signal   chan struct{}        // a room became dirty
	panics   *panics.Guard        // recovers the panics of its timers and watchers
}

type presenceRoom struct {
	online   []*models.User            // this replica's, in the order they came online
	remote   map[string][]*models.User // other replicas' users in the room
	joins    map[int64]int             // user id → joins not yet left
	leaving  map[int64]*time.Timer     // users with no join left, until grace ends
	watchers map[*live.Latest[*models.Presence]]struct{}
	last     []*models.User // the list last sent to watchers
	version  int64          // last's version: one more at each list sent (see live.WithVersionRecorder)
	sentAt   time.Time      // when it was sent
	flush    *time.Timer    // a send due at the end of the interval
}

// DefaultPresenceInterval is the shortest time between two lists sent for
// one room. A change in a quiet room goes out at once; changes that follow
// within the interval are sent together at its end, as the list is then.
// A join storm (every client of a restarted replica coming back) costs a
// list per interval, not one per join, each of them the whole list to
// every watcher.
const DefaultPresenceInterval = 500 * time.Millisecond

// DefaultLeaveGrace is how long a user stays online after their last
// subscription ended.
const DefaultLeaveGrace = 2 * time.Second

// NewPresence returns an empty presence tracker whose users go offline
// grace after their last join ends (at once for 0), and that sends a room's
// list at most once per interval (every change at once for 0).
func NewPresence(grace, interval time.Duration) *Presence {
	return &Presence{grace: grace, interval: interval, rooms: make(map[int64]*presenceRoom), replicas: make(map[string]time.Time),
		dirty: make(map[int64]bool), signal: make(chan struct{}, 1)}
}

func (p *Presence) room(id int64) *presenceRoom {
	r := p.rooms[id]
	if r == nil {
		r = &presenceRoom{joins: make(map[int64]int), leaving: make(map[int64]*time.Timer),
			remote: make(map[string][]*models.User), watchers: make(map[*live.Latest[*models.Presence]]struct{})}
		p.rooms[id] = r
	}
	return r
}

// forget drops a room's entry once nobody is online or watching.
func (p *Presence) forget(id int64, r *presenceRoom) {
	if len(r.joins) == 0 && len(r.leaving) == 0 && len(r.watchers) == 0 && len(r.remote) == 0 {
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
		p.localChanged(roomID)
		p.changed(roomID, r)
	}
	p.mu.Unlock()
	live.OnEnd(ctx, func() { p.panics.Do(ctx, wherePresence, func() { p.leave(roomID, u.ID) }) })
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
		p.panics.Do(context.Background(), wherePresence, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if r.leaving[userID] == t {
				delete(r.leaving, userID)
				p.offline(roomID, r, userID)
				p.forget(roomID, r)
			}
		})
	})
	r.leaving[userID] = t
	p.forget(roomID, r)
}

// offline takes userID off the room's list. Called with p.mu held.
func (p *Presence) offline(roomID int64, r *presenceRoom, userID int64) {
	r.online = slices.DeleteFunc(r.online, func(u *models.User) bool { return u.ID == userID })
	p.localChanged(roomID)
	p.changed(roomID, r)
}

// localChanged marks room's local list changed, for the hub to announce.
// Called with p.mu held.
func (p *Presence) localChanged(roomID int64) {
	p.dirty[roomID] = true
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// list is the room's full list: local users, then remote ones. Called with
// p.mu held.
func (r *presenceRoom) list() []*models.User {
	out := slices.Clone(r.online)
	if len(r.remote) == 0 {
		return out
	}
	replicas := make([]string, 0, len(r.remote))
	for id := range r.remote {
		replicas = append(replicas, id)
	}
	slices.Sort(replicas)
	seen := make(map[int64]bool, len(out))
	for _, u := range out {
		seen[u.ID] = true
	}
	for _, id := range replicas {
		for _, u := range r.remote[id] {
			if !seen[u.ID] {
				seen[u.ID] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// changed sends the room's new list to its watchers, at once or at the
// end of the current interval (see DefaultPresenceInterval). Called with p.mu held.
func (p *Presence) changed(roomID int64, r *presenceRoom) {
	if r.flush != nil {
		return // a send is due: it takes the list as it is then
	}
	if wait := p.interval - time.Since(r.sentAt); wait > 0 {
		r.flush = time.AfterFunc(wait, func() {
			p.panics.Do(context.Background(), wherePresence, func() {
				p.mu.Lock()
				defer p.mu.Unlock()
				r.flush = nil
				p.send(roomID, r)
			})
		})
		return
	}
	p.send(roomID, r)
}

// send sends the room's list to its watchers, when it differs from the last
// one sent. Called with p.mu held.
func (p *Presence) send(roomID int64, r *presenceRoom) {
	users := r.list()
	if sameUsers(users, r.last) {
		return
	}
	r.last = users
	r.version++
	r.sentAt = time.Now()
	if len(r.watchers) == 0 {
		return
	}
	ev := &models.Presence{RoomID: roomID, Online: users}
	for w := range r.watchers {
		w.SetVersion(ev, r.version)
	}
}

// sameUsers reports whether two online lists name the same users in the
// same order.
func sameUsers(a, b []*models.User) bool {
	return slices.EqualFunc(a, b, func(x, y *models.User) bool { return x.ID == y.ID })
}

// TakeDirty returns the rooms whose local list changed since the last call,
// with their local lists now, and the channel that signals the next change.
func (p *Presence) TakeDirty() map[int64][]*models.User {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int64][]*models.User, len(p.dirty))
	for id := range p.dirty {
		out[id] = []*models.User{}
		if r := p.rooms[id]; r != nil {
			out[id] = slices.Clone(r.online)
		}
	}
	clear(p.dirty)
	return out
}

// Dirty is signalled when a room's local list changes.
func (p *Presence) Dirty() <-chan struct{} { return p.signal }

// Local returns this replica's users of every room that has any.
func (p *Presence) Local() map[int64][]*models.User {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int64][]*models.User)
	for id, r := range p.rooms {
		if len(r.online) > 0 {
			out[id] = slices.Clone(r.online)
		}
	}
	return out
}

// ApplyRemote takes in another replica's users, valid until expires: for
// the rooms given, or, with full, for all rooms (those not given have none
// of its users).
func (p *Presence) ApplyRemote(replica string, rooms map[int64][]*models.User, full bool, expires time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replicas[replica] = expires
	if full {
		for id, r := range p.rooms {
			if _, ok := rooms[id]; !ok && r.remote[replica] != nil {
				delete(r.remote, replica)
				p.changed(id, r)
				p.forget(id, r)
			}
		}
	}
	for id, users := range rooms {
		r := p.room(id)
		if len(users) == 0 {
			delete(r.remote, replica)
		} else {
			r.remote[replica] = users
		}
		p.changed(id, r)
		p.forget(id, r)
	}
}

// ForgetRemote drops replicas whose state expired before now (they died
// without saying goodbye), or replica itself when it is not empty.
func (p *Presence) ForgetRemote(now time.Time, replica string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, exp := range p.replicas {
		if id != replica && !exp.Before(now) {
			continue
		}
		delete(p.replicas, id)
		for roomID, r := range p.rooms {
			if r.remote[id] != nil {
				delete(r.remote, id)
				p.changed(roomID, r)
				p.forget(roomID, r)
			}
		}
	}
}

// Online returns who is online in room now.
func (p *Presence) Online(roomID int64) []*models.User {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[roomID]; r != nil {
		return r.list()
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
	// The list as it is now: the one last sent, under its version, so that
	// the subscription can share its room's delivery; or, while a newer
	// one waits for the end of the interval, that one, unversioned (the
	// subscription then runs on its own).
	users, version := r.list(), int64(0)
	if r.version > 0 && sameUsers(users, r.last) {
		version = r.version
	}
	w.SetVersion(&models.Presence{RoomID: roomID, Online: users}, version)
	p.mu.Unlock()
	go w.RunGuarded(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(r.watchers, w)
		p.forget(roomID, r)
	}, p.panics, wherePresence)
	return w.C()
}
