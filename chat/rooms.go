package chat

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
)

// RoomEvents tells users that an entry of their room list changed: a room
// was created or opened with them, a message arrived, the room was read in
// another tab. Each watcher re-reads the rooms that changed, as the
// watching user sees them (name, unread count), so one event serves
// everybody; changes that pile up while a watcher is busy are merged.
type RoomEvents struct {
	mu       sync.Mutex
	watchers map[*roomWatcher]struct{}
	watching map[int64]int            // the users of watchers, with how many each has
	holds    map[int64]int            // users whose room lists are watched without a watcher here (see Hold)
	all      map[*allWatcher]struct{} // the watchers of every user's list (see WatchAll)
	recent   []recentChange           // the last changes, oldest first (see WatchAll)
	panics   *panics.Guard            // recovers the panics of its watchers
	// onChange, when set, hears of each change first, with the users of
	// the watchers of their own (Watch) it concerns, each once: the
	// watchers of every list (WatchAll) read their changes themselves.
	onChange func(roomID int64, users []int64)
}

type roomWatcher struct {
	userID  int64
	pending *live.Pending[int64, struct{}] // the rooms that changed
}

// queue has the watcher look at room again.
func (w *roomWatcher) queue(room int64) {
	w.pending.Update(room, func(struct{}, bool) struct{} { return struct{}{} })
}

// NewRoomEvents returns a notifier without watchers.
func NewRoomEvents() *RoomEvents {
	return &RoomEvents{watchers: make(map[*roomWatcher]struct{}), watching: make(map[int64]int), holds: make(map[int64]int), all: make(map[*allWatcher]struct{})}
}

// Hold counts userID's room list as watched until life ends, whether or
// not a watcher of theirs runs: a subscriber served by a watcher of every
// list (WatchAll) keeps its list followed so.
func (e *RoomEvents) Hold(life context.Context, userID int64) {
	e.mu.Lock()
	e.holds[userID]++
	e.mu.Unlock()
	live.OnEnd(life, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.holds[userID]--; e.holds[userID] <= 0 {
			delete(e.holds, userID)
		}
	})
}

// Changed reports that room changed for the users only (everyone who may
// see it when only is empty).
func (e *RoomEvents) Changed(roomID int64, only ...int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	users := e.usersOf(only)
	if e.onChange != nil && len(e.watching) > 0 {
		e.onChange(roomID, e.ownWatchersOf(only, users))
	}
	for a := range e.all {
		a.changed(roomID, users)
	}
	e.remember(roomID, only)
	if len(users) == 0 || len(e.watchers) == 0 {
		return
	}
	var woken []*roomWatcher
	for w := range e.watchers {
		if len(only) == 0 || slices.Contains(only, w.userID) {
			woken = append(woken, w)
		}
	}
	for _, w := range woken {
		w.queue(roomID)
	}
}

// usersOf returns the users, each once, whose lists a change for only
// (everyone when empty) concerns: those with a watcher or a hold here.
// Called with mu held.
func (e *RoomEvents) usersOf(only []int64) []int64 {
	watched := func(u int64) bool { return e.watching[u] > 0 || e.holds[u] > 0 }
	if len(only) > 0 {
		users := make([]int64, 0, len(only))
		for _, u := range only {
			if watched(u) && !slices.Contains(users, u) {
				users = append(users, u)
			}
		}
		return users
	}
	users := make([]int64, 0, len(e.watching)+len(e.holds))
	for u := range e.watching {
		users = append(users, u)
	}
	for u := range e.holds {
		if e.watching[u] == 0 {
			users = append(users, u)
		}
	}
	return users
}

// ownWatchersOf returns those of users (the users of a change for only:
// see usersOf) that have watchers of their own (Watch), in a new slice.
// Called with mu held.
func (e *RoomEvents) ownWatchersOf(only, users []int64) []int64 {
	if len(only) == 0 {
		return slices.Collect(maps.Keys(e.watching))
	}
	return slices.DeleteFunc(slices.Clone(users), func(u int64) bool { return e.watching[u] == 0 })
}

// roomRetry is how long a watcher waits before loading again a room whose
// load failed (the database unavailable).
const roomRetry = time.Second

// Watch returns the rooms that change for userID, each as load returns it.
// A room load answers models.NotFound for (not visible to the user) is
// skipped; one whose load failed otherwise is loaded again roomRetry later,
// so that a database hiccup does not leave the entry stale. The channel
// closes when ctx ends, or when a panic ends the watcher.
func (e *RoomEvents) Watch(ctx context.Context, userID int64, load func(ctx context.Context, roomID int64) (*models.Room, error)) <-chan *models.Room {
	w := &roomWatcher{userID: userID, pending: live.NewPending[int64, struct{}]()}
	e.mu.Lock()
	e.watchers[w] = struct{}{}
	e.watching[userID]++
	e.mu.Unlock()
	out := make(chan *models.Room)
	e.panics.Go(ctx, "chat.rooms", func() {
		defer close(out)
		defer func() {
			e.mu.Lock()
			delete(e.watchers, w)
			if e.watching[userID]--; e.watching[userID] <= 0 {
				delete(e.watching, userID)
			}
			e.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.pending.C():
			}
			e.panics.Point("chat.rooms")
			ids, _ := w.pending.Take()
			var failed []int64
			for _, id := range ids {
				room, err := load(ctx, id)
				if err != nil {
					if models.ErrorCode(err) != models.NotFound && ctx.Err() == nil {
						failed = append(failed, id)
					}
					continue
				}
				select {
				case out <- room:
				case <-ctx.Done():
					return
				}
			}
			if len(failed) > 0 {
				time.AfterFunc(roomRetry, func() {
					for _, id := range failed {
						w.queue(id)
					}
				})
			}
		}
	})
	return out
}
