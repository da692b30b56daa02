package chat

import (
	"context"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
)

// DefaultTypingTTL is how long a typing indicator lasts unless renewed.
const DefaultTypingTTL = 6 * time.Second

// TypingEvery is the shortest time between two typing (start or renewal)
// events of one user in one room: a renewal that comes sooner is coalesced
// (it still extends the indicator, but nothing goes out). Stops are never
// held back.
const TypingEvery = time.Second

// Typing keeps the typing indicators of every room. An indicator starts
// with Set(typing true), is renewed by repeating it, and ends when Set
// (typing false) is called (postMessage does), or by itself TTL after the
// last renewal: the server sends the end, so a client that vanished does
// not leave "typing…" behind.
//
// Whatever a client sends, a user's typing events in one room go out at
// most once per TypingEvery: a renewal sooner than that after the last one
// that went out is coalesced. It still extends the indicator, so it does
// not vanish while they keep typing, and the next one after TypingEvery
// goes out with the later expiresAt. A start that comes sooner than that
// after a stop is held back until the interval is over (and then goes out
// if the user still types). A stop goes out at once, unless the user was
// not shown as typing. Each replica decides by the times the events were
// made, so every replica decides alike.
//
// Typing events are best-effort: a watcher that does not keep up loses
// events beyond its buffer (each event carries expiresAt, so a client can
// still end a stale indicator itself).
type Typing struct {
	ttl    time.Duration
	now    func() time.Time // the clock of expiries and of TypingEvery
	panics *panics.Guard    // recovers the panics of its timers

	mu    sync.Mutex
	rooms map[int64]*typingRoom
}

type typingRoom struct {
	active   map[int64]*typist
	watchers map[*typingWatcher]struct{}
	// sent is when each user's last typing event went out, kept for
	// TypingEvery (a stop ends the typist, not the interval).
	sent map[int64]time.Time
}

type typist struct {
	user    *models.User
	timer   *time.Timer
	expires time.Time
	reveal  *time.Timer // shows a start held back (see Typing.show); nil when none is
	shown   bool        // a typing event of it went out: its end goes out too
}

// stopTimers stops the typist's expiry and its reveal.
func (ty *typist) stopTimers() {
	ty.timer.Stop()
	if ty.reveal != nil {
		ty.reveal.Stop()
	}
}

type typingWatcher struct {
	viewer int64 // their own indicator is not sent back to them
	c      chan *models.TypingEvent
}

// whereTyping names the panics of the typing timers.
const whereTyping = "chat.typing"

// typingBuffer is how many events a watcher may fall behind.
const typingBuffer = 64

// NewTyping returns a tracker whose indicators last ttl (DefaultTypingTTL
// when 0).
func NewTyping(ttl time.Duration) *Typing {
	if ttl <= 0 {
		ttl = DefaultTypingTTL
	}
	return &Typing{ttl: ttl, now: time.Now, rooms: make(map[int64]*typingRoom)}
}

func (t *Typing) room(id int64) *typingRoom {
	r := t.rooms[id]
	if r == nil {
		r = &typingRoom{active: make(map[int64]*typist), watchers: make(map[*typingWatcher]struct{}), sent: make(map[int64]time.Time)}
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
	now := t.now().UTC()
	if typing {
		now = now.Add(t.ttl)
	}
	return &models.TypingEvent{RoomID: roomID, User: u, Typing: typing, ExpiresAt: now}
}

// Active reports whether userID's indicator in room roomID is on, as this
// replica knows it (every replica applies every replica's events).
func (t *Typing) Active(roomID, userID int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	return r != nil && r.active[userID] != nil
}

// Apply applies an event made by Event, here or on another replica: a
// typing event starts or renews the indicator until its ExpiresAt (each
// replica ends it then by itself, so a replica that dies leaves nothing
// behind), a stop event ends it. Typing events go out at most once per
// TypingEvery per user and room (see Typing).
func (t *Typing) Apply(ev *models.TypingEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	// When the event was made (on whichever replica): every replica decides
	// by it alike, however late the broker brings the event.
	made := ev.ExpiresAt
	if ev.Typing {
		made = made.Add(-t.ttl)
	}
	r := t.room(ev.RoomID)
	for id, at := range r.sent {
		if made.Sub(at) >= TypingEvery {
			delete(r.sent, id)
		}
	}
	cur := r.active[ev.User.ID]
	if cur != nil {
		cur.stopTimers()
		delete(r.active, ev.User.ID)
	}
	if !ev.Typing {
		if cur != nil && cur.shown {
			t.emit(r, ev)
		}
		t.forget(ev.RoomID, r)
		return
	}
	ty := &typist{user: ev.User, expires: ev.ExpiresAt}
	ty.timer = time.AfterFunc(ev.ExpiresAt.Sub(now), func() { t.panics.Do(context.Background(), whereTyping, func() { t.expire(ev.RoomID, ty) }) })
	r.active[ev.User.ID] = ty
	switch last, recent := r.sent[ev.User.ID]; {
	case recent && cur != nil && cur.shown:
		ty.shown = true // a renewal, coalesced: extended, not sent
	case recent:
		// A start soon after a stop: shown once the interval is over.
		ty.reveal = time.AfterFunc(last.Add(TypingEvery).Sub(made), func() {
			t.panics.Do(context.Background(), whereTyping, func() { t.show(ev.RoomID, ty, last.Add(TypingEvery)) })
		})
	default:
		ty.shown = true
		r.sent[ev.User.ID] = made
		t.emit(r, ev)
	}
}

// show sends the start of ty, held back since it came within TypingEvery of
// the last one that went out, unless it was renewed or ended meanwhile; at
// is the end of that interval.
func (t *Typing) show(roomID int64, ty *typist, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	if r == nil || r.active[ty.user.ID] != ty || ty.shown {
		return
	}
	ty.shown = true
	r.sent[ty.user.ID] = at
	t.emit(r, &models.TypingEvent{RoomID: roomID, User: ty.user, Typing: true, ExpiresAt: ty.expires.UTC()})
}

// expire ends ty's indicator unless it was renewed or ended meanwhile; the
// end goes out if ty was shown.
func (t *Typing) expire(roomID int64, ty *typist) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	if r == nil || r.active[ty.user.ID] != ty {
		return
	}
	delete(r.active, ty.user.ID)
	ty.stopTimers()
	if ty.shown {
		t.emit(r, &models.TypingEvent{RoomID: roomID, User: ty.user, Typing: false, ExpiresAt: ty.expires.UTC()})
	}
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
		if ty.shown && ty.user.ID != viewer && len(w.c) < cap(w.c) {
			w.c <- &models.TypingEvent{RoomID: roomID, User: ty.user, Typing: true, ExpiresAt: ty.expires.UTC()}
		}
	}
	t.mu.Unlock()
	context.AfterFunc(ctx, func() {
		t.panics.Do(ctx, whereTyping, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			delete(r.watchers, w)
			close(w.c)
			t.forget(roomID, r)
		})
	})
	return w.c
}

// Stop ends every indicator's timer (at shutdown).
func (t *Typing) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rooms {
		for _, ty := range r.active {
			ty.stopTimers()
		}
	}
}
