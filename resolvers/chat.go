package resolvers

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/gqlws"
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

// subscriber is ctx, a chat subscription resolver's, set to count the
// caller online for as long as their subscription lasts, also once it has
// joined a shared execution, and not at all in the shared execution itself
// (see gqlws.SubscriberContext).
func subscriber(ctx context.Context) context.Context {
	online, ok := gqlws.SubscriberContext(ctx)
	if !ok {
		online = nil
	}
	return chat.OnlineWhile(ctx, online)
}

// lifetime is the context of the subscriber of ctx, a subscription
// resolver's: it ends when the subscription ends, also once it has joined a
// shared execution (see gqlws.SubscriberContext); ctx itself in a shared
// execution, which is nobody's.
func lifetime(ctx context.Context) context.Context {
	if life, ok := gqlws.SubscriberContext(ctx); ok {
		return life
	}
	return ctx
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

// roomCursorKind names room list cursors.
const roomCursorKind = "room"

// encodeRoomCursor makes the opaque cursor of a room at place in a room
// list read as of asOf (see chat.Service.ListRooms): the list's moment
// travels with every cursor, so that the next page places the rooms as the
// first one did.
func encodeRoomCursor(asOf time.Time, place models.RoomPlace) string {
	joined := "0"
	if place.Joined {
		joined = "1"
	}
	raw := strings.Join([]string{roomCursorKind, strconv.FormatInt(asOf.UnixMilli(), 10), joined,
		strconv.FormatInt(place.ActiveAt.UnixMilli(), 10), strconv.FormatInt(place.ID, 10)}, ":")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeRoomCursor reads a cursor made by encodeRoomCursor.
func decodeRoomCursor(cursor string) (*models.RoomListCursor, error) {
	bad := models.Errorf(models.BadUserInput, "after is not a cursor of this list")
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 5 || parts[0] != roomCursorKind || (parts[2] != "0" && parts[2] != "1") {
		return nil, bad
	}
	var n [3]int64
	for i, p := range []string{parts[1], parts[3], parts[4]} {
		if n[i], err = strconv.ParseInt(p, 10, 64); err != nil || n[i] <= 0 {
			return nil, bad
		}
	}
	return &models.RoomListCursor{
		AsOf:  time.UnixMilli(n[0]).UTC(),
		After: models.RoomPlace{Joined: parts[2] == "1", ActiveAt: time.UnixMilli(n[1]).UTC(), ID: n[2]},
	}, nil
}

// roomPage turns rooms, fetched one beyond the page size n from a list read
// as of asOf, into a relay page; a page continued after a cursor has
// previous pages.
func roomPage(rooms []models.ListedRoom, n int, asOf time.Time, continued bool) *models.RoomConnection {
	info := &models.PageInfo{HasNextPage: len(rooms) > n, HasPreviousPage: continued}
	rooms = rooms[:min(n, len(rooms))]
	edges := make([]*models.RoomEdge, len(rooms))
	for i, r := range rooms {
		edges[i] = &models.RoomEdge{Cursor: encodeRoomCursor(asOf, r.Place), Node: r.Room}
	}
	if len(edges) > 0 {
		info.StartCursor, info.EndCursor = &edges[0].Cursor, &edges[len(edges)-1].Cursor
	}
	return &models.RoomConnection{Edges: edges, PageInfo: info}
}
