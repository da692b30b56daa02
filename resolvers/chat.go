package resolvers

import (
	"context"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
)

const (
	// defaultHistoryPage is how many messages a history page holds by default.
	defaultHistoryPage = 50
	// maxUserSearch is the most users one search returns.
	maxUserSearch = 50
)

// callerID is the signed-in caller's user id, 0 for an anonymous caller.
func callerID(ctx context.Context) int64 {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.User.ID
	}
	return 0
}

// parseID reads a numeric object id. An id that cannot be one names no
// object: NOT_FOUND, as for an id that does not exist.
func parseID(arg, kind, id string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
	if err != nil || n <= 0 {
		return 0, models.Errorf(models.NotFound, "%s: %s %q not found", arg, kind, id)
	}
	return n, nil
}

// visibleRoom returns room id if the caller may see it; any other room,
// direct rooms of others included, is the same NOT_FOUND.
func (r *Resolver) visibleRoom(ctx context.Context, id string) (*models.Room, error) {
	roomID, err := parseID("roomId", "room", id)
	if err != nil {
		return nil, models.Errorf(models.NotFound, "room %q not found", id)
	}
	return r.DB.RoomFor(ctx, roomID, callerID(ctx))
}

// callerIn returns the signed-in caller and room id, which they may see
// (see visibleRoom): the start of every chat mutation.
func (r *Resolver) callerIn(ctx context.Context, roomID string) (*models.User, *models.Room, error) {
	me, err := r.currentUser(ctx)
	if err != nil {
		return nil, nil, err
	}
	room, err := r.visibleRoom(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	return me, room, nil
}

// joinPresence counts a signed-in caller online in room while ctx (the
// subscription's) lasts.
func (r *Resolver) joinPresence(ctx context.Context, roomID int64) {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		u := p.User
		r.Chat.Presence.Join(ctx, roomID, &u)
	}
}

// roomChanged tells everyone who sees room that its list entry changed.
func (r *Resolver) roomChanged(ctx context.Context, room *models.Room) {
	if !room.Direct {
		r.Chat.RoomChanged(ctx, room.ID)
		return
	}
	members, err := r.DB.RoomMembers(ctx, []int64{room.ID})
	if err != nil {
		r.Log.WarnContext(ctx, "room list change not announced", "room", room.ID, "err", err)
		return
	}
	ids := make([]int64, len(members[room.ID]))
	for i, u := range members[room.ID] {
		ids[i] = u.ID
	}
	r.Chat.RoomChanged(ctx, room.ID, ids...)
}
