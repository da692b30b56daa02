package chat

import (
	"context"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// DefaultTypingTTL is how long a typing indicator lasts unless renewed.
const DefaultTypingTTL = 6 * time.Second

// Typing keeps the typing indicators of every room. An indicator starts
// with Set(typing true), is renewed by repeating it, and ends when Set
// (typing false) is called (postMessage does), or by itself TTL after the
// last renewal: the server sends the end, so a client that vanished does
// not leave "typing…" behind.
//
// Typing events are best-effort: a watcher that does not keep up loses
// events beyond its buffer (each event carries expiresAt, so a client can
// still end a stale indicator itself).
type Typing struct {
	ttl time.Duration

	mu    sync.Mutex
	rooms map[int64]*typingRoom
}

type typingRoom struct {
	active   map[int64]*typist
	watchers map[*typingWatcher]struct{}
}

type typist struct {
	user    *models.User
	timer   *time.Timer
	expires time.Time
}

type typingWatcher struct {
	viewer int64 // their own indicator is not sent back to them
	c      chan *models.TypingEvent
}

// typingBuffer is how many events a watcher may fall behind.
const typingBuffer = 64

// NewTyping returns a tracker whose indicators last ttl (DefaultTypingTTL
// when 0).
func NewTyping(ttl time.Duration) *Typing {
	if ttl <= 0 {
		ttl = DefaultTypingTTL
	}
	return &Typing{ttl: ttl, rooms: make(map[int64]*typingRoom)}
}

func (t *Typing) room(id int64) *typingRoom {
	r := t.rooms[id]
	if r == nil {
		r = &typingRoom{active: make(map[int64]*typist), watchers: make(map[*typingWatcher]struct{})}
		t.rooms[id] = r
	}
	return r
}

func (t *Typing) forget(id int64, r *typingRoom) {
	if len(r.active) == 0 && len(r.watchers) == 0 {
		delete(t.rooms, id)
	}
}

// Set starts or renews (typing true) or ends (false) u's indicator in room,
// for TTL from now. Ending one that is not on does nothing.
func (t *Typing) Set(roomID int64, u *models.User, typing bool) {
	t.Apply(t.Event(roomID, u, typing))
}

// Event is the event Set would apply now: it ends TTL from now when typing.
func (t *Typing) Event(roomID int64, u *models.User, typing bool) *models.TypingEvent {
	now := time.Now().UTC()
	if typing {
		now = now.Add(t.ttl)
	}
	return &models.TypingEvent{RoomID: roomID, User: u, Typing: typing, ExpiresAt: now}
}

// Apply applies an event made by Event, here or on another replica: a
// typing event starts or renews the indicator until its ExpiresAt (each
// replica ends it then by itself, so a replica that dies leaves nothing
// behind), a stop event ends it.
func (t *Typing) Apply(ev *models.TypingEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.room(ev.RoomID)
	cur := r.active[ev.User.ID]
	if cur != nil {
		cur.timer.Stop()
		delete(r.active, ev.User.ID)
	}
	if !ev.Typing {
		if cur != nil {
			t.emit(r, ev)
		}
		t.forget(ev.RoomID, r)
		return
	}
	ty := &typist{user: ev.User, expires: ev.ExpiresAt}
	ty.timer = time.AfterFunc(time.Until(ev.ExpiresAt), func() { t.expire(ev.RoomID, ty) })
	r.active[ev.User.ID] = ty
	t.emit(r, ev)
}

// expire ends ty's indicator unless it was renewed or ended meanwhile.
func (t *Typing) expire(roomID int64, ty *typist) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	if r == nil || r.active[ty.user.ID] != ty {
		return
	}
	delete(r.active, ty.user.ID)
	t.emit(r, &models.TypingEvent{RoomID: roomID, User: ty.user, Typing: false, ExpiresAt: ty.expires.UTC()})
	t.forget(roomID, r)
}

// emit sends ev to the room's watchers but its author. Called with t.mu
// held.
func (t *Typing) emit(r *typingRoom, ev *models.TypingEvent) {
	for w := range r.watchers {
		if w.viewer == ev.User.ID {
			continue
		}
		select {
		case w.c <- ev:
		default: // best effort: see Typing
		}
	}
}

// Watch returns the room's typing events for viewer (0 for an anonymous
// one), starting with the indicators on now, until ctx ends.
func (t *Typing) Watch(ctx context.Context, roomID, viewer int64) <-chan *models.TypingEvent {
	w := &typingWatcher{viewer: viewer, c: make(chan *models.TypingEvent, typingBuffer)}
	t.mu.Lock()
	r := t.room(roomID)
	r.watchers[w] = struct{}{}
	for _, ty := range r.active {
		if ty.user.ID != viewer && len(w.c) < cap(w.c) {
			w.c <- &models.TypingEvent{RoomID: roomID, User: ty.user, Typing: true, ExpiresAt: ty.expires.UTC()}
		}
	}
	t.mu.Unlock()
	context.AfterFunc(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(r.watchers, w)
		close(w.c)
		t.forget(roomID, r)
	})
	return w.c
}

// Stop ends every indicator's timer (at shutdown).
func (t *Typing) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rooms {
		for _, ty := range r.active {
			ty.timer.Stop()
		}
	}
}
