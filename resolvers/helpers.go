package resolvers

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
)

// Page sizes of list queries.
const (
	defaultPageSize = 20
	maxPageSize     = 100
)

// pageSize validates a first/last argument.
func pageSize(arg string, n *int) (int, error) {
	if n == nil {
		return defaultPageSize, nil
	}
	if *n < 1 || *n > maxPageSize {
		return 0, models.Errorf(models.BadUserInput, "%s must be between 1 and %d (got %d)", arg, maxPageSize, *n)
	}
	return *n, nil
}

// encodeCursor makes the opaque connection cursor of item id of a kind of
// list ("status", …).
func encodeCursor(kind string, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + strconv.FormatInt(id, 10)))
}

// decodeCursor reads a cursor made by encodeCursor for the same kind.
func decodeCursor(arg, kind, cursor string) (int64, error) {
	bad := models.Errorf(models.BadUserInput, "%s is not a cursor of this list", arg)
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, bad
	}
	k, v, ok := strings.Cut(string(raw), ":")
	if !ok || k != kind {
		return 0, bad
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, bad
	}
	return id, nil
}

// parsePosition reads an event id given as a stream cursor (after: ID).
func parsePosition(arg string, id *string) (*int64, error) {
	if id == nil {
		return nil, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(*id), 10, 64)
	if err != nil || n < 0 {
		return nil, models.Errorf(models.BadUserInput, "%s must be the id of an event of this stream (got %q)", arg, *id)
	}
	return &n, nil
}

// currentUser returns the caller's user record, refusing callers without a
// token, and tokens whose user no longer exists.
func (r *Resolver) currentUser(ctx context.Context) (*models.User, error) {
	p, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	return r.Accounts.Current(ctx, p)
}

// relayPage turns items, fetched one beyond the page size n, into a relay
// page: the edges (cursors of kind at pos) and where the page sits. A
// forward page (newest first) continues after a cursor when continued; a
// backward page (history, oldest first) continues before one.
func relayPage[T, E any](items []T, n int, kind string, pos func(T) int64, edge func(cursor string, node T) E,
	cursorOf func(E) *string, continued, backward bool) ([]E, *models.PageInfo) {
	more := len(items) > n
	if more {
		items = items[:n]
	}
	info := &models.PageInfo{HasNextPage: more, HasPreviousPage: continued}
	if backward {
		slices.Reverse(items)
		info.HasNextPage, info.HasPreviousPage = continued, more
	}
	edges := make([]E, len(items))
	for i, it := range items {
		edges[i] = edge(encodeCursor(kind, pos(it)), it)
	}
	if len(edges) > 0 {
		info.StartCursor, info.EndCursor = cursorOf(edges[0]), cursorOf(edges[len(edges)-1])
	}
	return edges, info
}
