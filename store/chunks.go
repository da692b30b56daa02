package store

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/models"
)

// maxInList is the most values one IN (...) list of a statement holds.
// SQLite caps the placeholders of a statement (at 32766; builds before
// 3.32 at 999) and MySQL at 65535, and the sets the store is asked about
// (the rooms and users of a batch of loads) have no bound of their own, so
// every method that takes a set queries it in pieces of at most this many.
const maxInList = 500

// chunked calls f with consecutive pieces of xs of at most maxInList
// values, in order, and stops at the first error.
func chunked[T any](xs []T, f func(piece []T) error) error {
	for len(xs) > 0 {
		n := min(len(xs), maxInList)
		if err := f(xs[:n]); err != nil {
			return err
		}
		xs = xs[n:]
	}
	return nil
}

// pairGroup is a set of rooms and a set of users whose every room-user pair
// was asked for.
type pairGroup struct{ rooms, users []int64 }

// pairGroups covers keys exactly with groups: rooms asked for by the same
// users form one group, or users asking for the same rooms do, whichever
// makes fewer groups. One user's room list is one group, one room's
// watchers another, and the two asked together stay two groups instead of
// their cross product. Groups and their ids are sorted.
func pairGroups(keys []models.RoomUser) []pairGroup {
	byRoom := groupBy(keys, func(k models.RoomUser) (int64, int64) { return k.Room, k.User })
	byUser := groupBy(keys, func(k models.RoomUser) (int64, int64) { return k.User, k.Room })
	if len(byUser) < len(byRoom) {
		for i := range byUser {
			byUser[i].rooms, byUser[i].users = byUser[i].users, byUser[i].rooms
		}
		return byUser
	}
	return byRoom
}

// groupBy gathers the keys' "this" ids by the set of "other" ids each was
// asked with: each group holds the this ids (in rooms) sharing one set of
// other ids (in users).
func groupBy(keys []models.RoomUser, split func(models.RoomUser) (this, other int64)) []pairGroup {
	others := make(map[int64]map[int64]struct{})
	for _, k := range keys {
		this, other := split(k)
		if others[this] == nil {
			others[this] = make(map[int64]struct{})
		}
		others[this][other] = struct{}{}
	}
	groups := make(map[string]*pairGroup)
	for this, ids := range others {
		set := slices.Sorted(maps.Keys(ids))
		sig := signature(set)
		g := groups[sig]
		if g == nil {
			g = &pairGroup{users: set}
			groups[sig] = g
		}
		g.rooms = append(g.rooms, this)
	}
	out := make([]pairGroup, 0, len(groups))
	for _, g := range groups {
		slices.Sort(g.rooms)
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b pairGroup) int {
		return cmp.Or(slices.Compare(a.rooms, b.rooms), slices.Compare(a.users, b.users))
	})
	return out
}

// signature names a sorted set of ids.
func signature(ids []int64) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatInt(id, 10))
		b.WriteByte(',')
	}
	return b.String()
}

// forPairs calls f with rooms and users, at most maxInList of each, whose
// pairs are together exactly keys' (see pairGroups), and stops at the first
// error.
func forPairs(keys []models.RoomUser, f func(rooms, users []int64) error) error {
	for _, g := range pairGroups(keys) {
		err := chunked(g.rooms, func(rooms []int64) error {
			return chunked(g.users, func(users []int64) error { return f(rooms, users) })
		})
		if err != nil {
			return err
		}
	}
	return nil
}
