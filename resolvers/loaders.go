package resolvers

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/batch"
	"github.com/switchboardhq/switchboard/models"
)

// The fields of a room that depend on who asks or on other rows (the
// members of a direct room, which also name it, the unread count and the
// last message) are read through these batch loaders: the rooms query
// resolves the fields of its rooms concurrently. (A roomsChanged entry comes
// with them already read, for all its watchers at once: models.RoomSeen.) Loads asked within batchWait
// share one query, so a list costs a few queries, not a few per room, and a
// message a few, not a few per watcher (see package batch: each answer is
// read after it was asked for, never from a cache). A batch has no bound of
// its own (every watcher of a busy room joins it): the store reads any set
// in pieces of a bounded size, and the pairs of the unread counts and
// joined flags in groups that never multiply one user's rooms by another
// room's watchers (see store.DB.UnreadCounts).
type loaders struct {
	members *batch.Loader[int64, []*models.User]
	last    *batch.Loader[int64, *models.Message]
	unread  *batch.Loader[models.RoomUser, int]
	joined  *batch.Loader[models.RoomUser, bool]
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
			members: batch.New(batchWait, batchTimeout, r.Chat.Members),
			last:    batch.New(batchWait, batchTimeout, r.Chat.LastMessages),
			unread:  batch.New(batchWait, batchTimeout, r.Chat.UnreadCounts),
			joined:  batch.New(batchWait, batchTimeout, r.Chat.Joined),
		}
		b := r.batch
		b.members.Panics, b.last.Panics, b.unread.Panics, b.joined.Panics = r.Panics, r.Panics, r.Panics, r.Panics
	})
	return r.batch
}

// members returns the members of direct room obj: as the viewer saw them
// when obj was read for them (models.RoomSeen), else through the batch.
func (r *Resolver) members(ctx context.Context, obj *models.Room) ([]*models.User, error) {
	if obj.Seen != nil {
		return obj.Seen.Members, nil
	}
	members, _, err := r.loaders().members.Load(ctx, obj.ID)
	return members, err
}
