package chat

import (
	"context"
	"slices"
	"sync"

	"github.com/switchboardhq/switchboard/models"
)

// RoomEvents tells users that an entry of their room list changed: a room
// was created or opened with them, a message arrived, the room was read in
// another tab. Each watcher re-reads the rooms that changed, as the
// watching user sees them (name, unread count), so one event serves
// everybody; changes that pile up while a watcher is busy are merged.
type RoomEvents struct {
	mu       sync.Mutex
	watchers map[*roomWatcher]struct{}
}

type roomWatcher struct {
	userID  int64
	mu      sync.Mutex
	pending []int64
	signal  chan struct{}
}

// NewRoomEvents returns a notifier without watchers.
func NewRoomEvents() *RoomEvents { return &RoomEvents{watchers: make(map[*roomWatcher]struct{})} }

// Changed reports that room changed for the users only (everyone who may
// see it when only is empty).
func (e *RoomEvents) Changed(roomID int64, only ...int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for w := range e.watchers {
		if len(only) > 0 && !slices.Contains(only, w.userID) {
			continue
		}
		w.mu.Lock()
		if !slices.Contains(w.pending, roomID) {
			w.pending = append(w.pending, roomID)
		}
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// Watch returns the rooms that change for userID, each as load returns it;
// a room load cannot return (not visible to the user) is skipped. The
// channel closes when ctx ends.
func (e *RoomEvents) Watch(ctx context.Context, userID int64, load func(ctx context.Context, roomID int64) (*models.Room, error)) <-chan *models.Room {
	w := &roomWatcher{userID: userID, signal: make(chan struct{}, 1)}
	e.mu.Lock()
	e.watchers[w] = struct{}{}
	e.mu.Unlock()
	out := make(chan *models.Room)
	go func() {
		defer close(out)
		defer func() {
			e.mu.Lock()
			delete(e.watchers, w)
			e.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.signal:
			}
			w.mu.Lock()
			ids := w.pending
			w.pending = nil
			w.mu.Unlock()
			for _, id := range ids {
				room, err := load(ctx, id)
				if err != nil {
					continue
				}
				select {
				case out <- room:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
