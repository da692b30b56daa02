package chat

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
)

// allWatcher follows every room list watched on this replica at once: it is
// the leader of the WebSocket group that serves every roomsChanged
// subscriber (gqlws.Options.SpanningFields). A room's changes that pile up
// while it is busy are merged, with the users they concern.
type allWatcher struct {
	// pending holds, by room, the users its changes concern, each once: the
	// slice a change named (shared with its other readers: never changed),
	// or the union of several, made when a change comes while another
	// waits (only when the watcher is behind).
	pending *live.Pending[int64, []int64]
}

// recentChange is a change RoomEvents remembers for a while: the room and
// whom it is for (everyone who may see it when only is empty); the users
// it concerns are worked out again when it is replayed.
type recentChange struct {
	at     time.Time
	roomID int64
	only   []int64
}

// remember keeps a change for the watchers of every list that start in the
// next recentReplay. Called with mu held.
func (e *RoomEvents) remember(roomID int64, only []int64) {
	now := time.Now()
	e.dropOld(now)
	if len(e.recent) == maxRecent {
		e.recent[0] = recentChange{}
		e.recent = e.recent[1:]
	}
	e.recent = append(e.recent, recentChange{at: now, roomID: roomID, only: slices.Clone(only)})
}

// dropOld forgets the changes older than recentReplay. Called with mu held.
func (e *RoomEvents) dropOld(now time.Time) {
	i := 0
	for i < len(e.recent) && now.Sub(e.recent[i].at) > recentReplay {
		i++
	}
	clear(e.recent[:i]) // let their slices go; the array is left behind at the next growth
	e.recent = e.recent[i:]
}

// A watcher of every list starts with the changes of the last recentReplay
// (at most maxRecent): its subscribers stopped their own watchers, which
// held their lists (Hold), moments before it started, and what changed in
// between must reach them. One may get such a change twice (its own watcher
// had it too): an entry is a room as it is now, so twice is harmless.
const (
	recentReplay = 2 * time.Second
	maxRecent    = 1024
)

// changed queues roomID for users (RoomEvents.Changed, or a retry).
func (a *allWatcher) changed(roomID int64, users []int64) {
	if len(users) == 0 {
		return
	}
	a.pending.Update(roomID, func(old []int64, queued bool) []int64 {
		if !queued {
			return users
		}
		return union(old, users)
	})
}

// union returns the users of a and b, each once, in a new slice.
func union(a, b []int64) []int64 {
	seen := make(map[int64]struct{}, len(a)+len(b))
	out := make([]int64, 0, len(a)+len(b))
	for _, u := range slices.Concat(a, b) {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			out = append(out, u)
		}
	}
	return out
}

// Positions is where a stream reports what it hands out (see
// stream.WithPositionRecorder), and Audience whom each result is for (see
// stream.WithAudienceRecorder).
type Positions struct {
	Sent, CaughtUp func(pos int64)
	Audience       func(user string)
}

// WatchAll returns the changed entries of every room list watched here
// (by a watcher or a Hold), until ctx ends. Each change of a room is read
// once for all the users it concerns (load, which leaves out those who
// may not see the room), and each distinct view of it (the unread count
// and joined flag; a direct room's name is its viewer's own) is handed out
// once, after rec has heard each of its users and its position (1, 2, …;
// the watcher reports itself caught up at 0 first). A failed read is tried
// again roomRetry later.
func (e *RoomEvents) WatchAll(ctx context.Context, load func(ctx context.Context, roomID int64, users []int64) (map[int64]*models.Room, error), rec Positions) <-chan *models.Room {
	a := &allWatcher{pending: live.NewPending[int64, []int64]()}
	e.mu.Lock()
	e.all[a] = struct{}{}
	e.dropOld(time.Now())
	for _, c := range e.recent {
		a.changed(c.roomID, e.usersOf(c.only))
	}
	e.mu.Unlock()
	rec.CaughtUp(0)
	out := make(chan *models.Room)
	e.panics.Go(ctx, "chat.rooms", func() {
		defer close(out)
		defer func() {
			e.mu.Lock()
			delete(e.all, a)
			e.mu.Unlock()
		}()
		var pos int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.pending.C():
			}
			e.panics.Point("chat.rooms")
			order, pending := a.pending.Take()
			for _, roomID := range order {
				users := pending[roomID]
				seen, err := load(ctx, roomID, users)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					time.AfterFunc(roomRetry, func() { a.changed(roomID, users) })
					continue
				}
				for _, view := range views(users, seen) {
					eachScope(view, rec.Audience)
					pos++
					rec.Sent(pos)
					select {
					case out <- seen[view[0]]:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	})
	return out
}

// eachScope calls f with the scope of each of users (the user's id in
// decimal, as gqlws.Options.Scope names it), in order. The scopes are
// substrings of one string: a change's audience is one allocation, not one
// per user, and stays that compact while a group remembers it.
func eachScope(users []int64, f func(scope string)) {
	var b strings.Builder
	b.Grow(len(users) * 6)
	ends := make([]int32, len(users))
	var digits [20]byte
	for i, u := range users {
		b.Write(strconv.AppendInt(digits[:0], u, 10))
		ends[i] = int32(b.Len())
	}
	all, start := b.String(), int32(0)
	for _, end := range ends {
		f(all[start:end])
		start = end
	}
}

// views groups users by the view of the room they have in seen (those
// without one may not see it), in the order of their first user.
func views(users []int64, seen map[int64]*models.Room) [][]int64 {
	return live.GroupBy(users, func(u int64) (roomView, bool) {
		r := seen[u]
		if r == nil || r.Seen == nil {
			return roomView{}, false
		}
		return viewOf(r.Direct, r.Seen.UnreadCount, r.Seen.Joined, u), true
	})
}

// roomView is how one user sees a room: users of one view are served one
// copy of it (Service.readRoom) and one result (views).
type roomView struct {
	unread int
	joined bool
	viewer int64 // a direct room's: its name is the other member's
}

// viewOf is user's view of a room (direct or not) with unread messages.
func viewOf(direct bool, unread int, joined bool, user int64) roomView {
	v := roomView{unread: unread, joined: joined}
	if direct {
		v.viewer = user
	}
	return v
}
