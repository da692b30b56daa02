package resolvers

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"golang.org/x/sync/errgroup"

	"github.com/switchboardhq/switchboard/batch"
	"github.com/switchboardhq/switchboard/models"
)

// The fields of a room that depend on who asks or on other rows (the
// members of a direct room, which also name it, the unread count and the
// last message) come with the room when it was read in a list: a page of
// the rooms query reads them for all its rooms at once (seeRooms), and a
// roomsChanged entry for all its watchers at once (models.RoomSeen).
// Elsewhere (a room, a mutation's answer, a message's room) they are read
// through these batch loaders: loads asked within batchWait of each other
// share one query (see package batch: each answer is read after it was
// asked for, never from a cache). A batch has no bound of its own: the
// store reads any set in pieces of a bounded size, and the pairs of the
// unread counts and joined flags in groups that never multiply one user's
// rooms by another room's watchers (see store.DB.UnreadCounts).
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

// seeRooms reads, for a page of the caller's room list, the fields of its
// rooms that the operation selects and that depend on other rows or on the
// caller (see models.RoomSeen), for all the rooms at once, and hands each
// room what it has: a page costs the same few statements however long it
// is. (The batch loaders would gather a page's loads too, but only those
// asked within batchWait of each other: on a busy machine a page may take
// several fetches.) Nothing is read when no such field is selected.
func (r *Resolver) seeRooms(ctx context.Context, rooms []*models.Room) error {
	sel := pageNodeFields(ctx)
	me := callerID(ctx)
	wantMembers := sel["members"] || sel["name"]
	wantUnread, wantJoined := sel["unreadCount"] && me != 0, sel["joined"] && me != 0
	if len(rooms) == 0 || !(wantMembers || sel["lastMessage"] || wantUnread || wantJoined) {
		return nil
	}
	var ids, direct []int64
	var keys, public []models.RoomUser
	for _, room := range rooms {
		ids = append(ids, room.ID)
		keys = append(keys, models.RoomUser{Room: room.ID, User: me})
		if room.Direct {
			direct = append(direct, room.ID)
		} else {
			public = append(public, models.RoomUser{Room: room.ID, User: me})
		}
	}
	var (
		members map[int64][]*models.User
		last    map[int64]*models.Message
		unread  map[models.RoomUser]int
		joined  map[models.RoomUser]bool
	)
	g, gctx := errgroup.WithContext(ctx)
	read := func(want bool, f func() error) {
		if want {
			g.Go(f)
		}
	}
	read(wantMembers && len(direct) > 0, func() (err error) { members, err = r.Chat.Members(gctx, direct); return err })
	read(sel["lastMessage"], func() (err error) { last, err = r.Chat.LastMessages(gctx, ids); return err })
	read(wantUnread, func() (err error) { unread, err = r.Chat.UnreadCounts(gctx, keys); return err })
	read(wantJoined && len(public) > 0, func() (err error) { joined, err = r.Chat.Joined(gctx, public); return err })
	if err := g.Wait(); err != nil {
		return err
	}
	for _, room := range rooms {
		key := models.RoomUser{Room: room.ID, User: me}
		room.Seen = &models.RoomSeen{Members: members[room.ID], UnreadCount: unread[key], LastMessage: last[room.ID],
			Joined: room.Direct || joined[key], Viewer: me}
	}
	return nil
}

// pageNodeFields returns the names of the fields a connection resolver's
// operation selects on its edges' nodes (through fragments, and honouring
// @skip and @include).
func pageNodeFields(ctx context.Context) map[string]bool {
	op := graphql.GetOperationContext(ctx)
	out := make(map[string]bool)
	for _, edges := range graphql.CollectFieldsCtx(ctx, nil) {
		if edges.Name != "edges" {
			continue
		}
		for _, node := range graphql.CollectFields(op, edges.Selections, nil) {
			if node.Name != "node" {
				continue
			}
			for _, f := range graphql.CollectFields(op, node.Selections, nil) {
				out[f.Name] = true
			}
		}
	}
	return out
}
