package resolvers

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/batch"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// A message in a public room changes an entry of every signed-in user's
// room list: each roomsChanged watcher re-reads the room, its unread count
// and its last message, all at about the same moment. These loaders make
// that three queries per message instead of three per watcher (see package
// batch: each answer is read after it was asked for, never from a cache).
type loaders struct {
	rooms  *batch.Loader[int64, *models.Room]
	last   *batch.Loader[int64, *models.Message]
	unread *batch.Loader[store.RoomUser, int]
}

const (
	// batchWait is how long a load waits for others to join its fetch.
	batchWait = 2 * time.Millisecond
	// batchTimeout bounds one fetch, which serves many callers.
	batchTimeout = 10 * time.Second
)

func (r *Resolver) loaders() *loaders {
	r.loadersOnce.Do(func() {
		r.batch = &loaders{
			rooms: batch.New(batchWait, batchTimeout, r.DB.Rooms),
			last: batch.New(batchWait, batchTimeout, func(ctx context.Context, ids []int64) (map[int64]*models.Message, error) {
				rooms := make([]*models.Room, len(ids))
				for i, id := range ids {
					rooms[i] = &models.Room{ID: id}
				}
				if err := r.DB.LoadLastMessages(ctx, rooms); err != nil {
					return nil, err
				}
				out := make(map[int64]*models.Message, len(rooms))
				for _, room := range rooms {
					if room.Last != nil {
						out[room.ID] = room.Last
					}
				}
				return out, nil
			}),
			unread: batch.New(batchWait, batchTimeout, func(ctx context.Context, keys []store.RoomUser) (map[store.RoomUser]int, error) {
				// A batch is one room's watchers or one user's rooms: the
				// cross product of its rooms and users is hardly larger.
				rooms, users := map[int64]bool{}, map[int64]bool{}
				for _, k := range keys {
					rooms[k.Room], users[k.User] = true, true
				}
				return r.DB.UnreadCounts(ctx, slices.Collect(maps.Keys(rooms)), slices.Collect(maps.Keys(users)))
			}),
		}
	})
	return r.batch
}

// watchedRoom is store.RoomFor for a room-list watcher: a public room's row
// comes from a batch shared with the other watchers (copied: each watcher
// resolves its own fields on it); a direct room, which only its two
// members watch, is read as usual.
func (r *Resolver) watchedRoom(ctx context.Context, id, userID int64) (*models.Room, error) {
	room, ok, err := r.loaders().rooms.Load(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, models.Errorf(models.NotFound, "room %d not found", id)
	case room.Direct:
		return r.DB.RoomFor(ctx, id, userID)
	}
	own := *room
	return &own, nil
}
