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
// resolves the fields of its rooms concurrently, and a message in a public
// room has every roomsChanged watcher re-read the room, its unread count and
// its last message at about the same moment. Loads asked within batchWait
// share one query, so a list costs a few queries, not a few per room, and a
// message a few, not a few per watcher (see package batch: each answer is
// read after it was asked for, never from a cache). A batch has no bound of
// its own (every watcher of a busy room joins it): the store reads any set
// in pieces of a bounded size, and the pairs of the unread counts and
// joined flags in groups that never multiply one user's rooms by another
// room's watchers (see store.DB.UnreadCounts).
type loaders struct {
	rooms   *batch.Loader[int64, *models.Room]
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
			rooms:   batch.New(batchWait, batchTimeout, r.Chat.Rooms),
			members: batch.New(batchWait, batchTimeout, r.Chat.Members),
			last:    batch.New(batchWait, batchTimeout, r.Chat.LastMessages),
			unread:  batch.New(batchWait, batchTimeout, r.Chat.UnreadCounts),
			joined:  batch.New(batchWait, batchTimeout, r.Chat.Joined),
		}
		b := r.batch
		b.rooms.Panics, b.members.Panics, b.last.Panics, b.unread.Panics, b.joined.Panics = r.Panics, r.Panics, r.Panics, r.Panics, r.Panics
	})
	return r.batch
}

// watchedRoom is room id as me sees it, for a room-list watcher: the row
// comes from a batch shared with the other watchers (read only, by every
// one of them), and a direct room is checked as usual (see
// chat.Service.Visible).
func (r *Resolver) watchedRoom(ctx context.Context, id int64, me *models.User) (*models.Room, error) {
	room, ok, err := r.loaders().rooms.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, models.Errorf(models.NotFound, "room %d not found", id)
	}
	v, err := r.Chat.Visible(ctx, room, me)
	if err != nil {
		return nil, err
	}
	return v.Room(), nil
}
