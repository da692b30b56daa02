package resolvers

import (
	"context"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/chat"
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

// viewer is the signed-in caller as their token names them, nil for an
// anonymous caller: who sees rooms and is counted online, without a
// database read.
func viewer(ctx context.Context) *models.User {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		u := p.User
		return &u
	}
	return nil
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

// parseRoomID reads a roomId argument; one that cannot be an id is the
// same NOT_FOUND as a room the caller may not see.
func parseRoomID(id string) (int64, error) {
	n, err := parseID("roomId", "room", id)
	if err != nil {
		return 0, models.Errorf(models.NotFound, "room %q not found", id)
	}
	return n, nil
}

// room returns room id as the caller may see it (see chat.Service.Room).
func (r *Resolver) room(ctx context.Context, id string) (*chat.View, error) {
	roomID, err := parseRoomID(id)
	if err != nil {
		return nil, err
	}
	return r.Chat.Room(ctx, viewer(ctx), roomID)
}

// callerIn returns the signed-in caller and the room id they name: the
// start of every chat mutation (the service checks that they may see it).
func (r *Resolver) callerIn(ctx context.Context, roomID string) (*models.User, int64, error) {
	me, err := r.currentUser(ctx)
	if err != nil {
		return nil, 0, err
	}
	id, err := parseRoomID(roomID)
	if err != nil {
		return nil, 0, err
	}
	return me, id, nil
}
