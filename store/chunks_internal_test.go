package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

func TestChunked(t *testing.T) {
	var sizes []int
	xs := make([]int, 2*maxInList+1)
	require.NoError(t, chunked(xs, func(piece []int) error { sizes = append(sizes, len(piece)); return nil }))
	assert.Equal(t, []int{maxInList, maxInList, 1}, sizes)
	require.NoError(t, chunked([]int(nil), func([]int) error { t.Fatal("called for nothing"); return nil }))
}

// TestPairGroups: keys are covered exactly (no pair that was not asked
// for), by room or by user, whichever makes fewer groups.
func TestPairGroups(t *testing.T) {
	ru := func(room, user int64) models.RoomUser { return models.RoomUser{Room: room, User: user} }
	tests := []struct {
		name string
		keys []models.RoomUser
		want []pairGroup
	}{
		{name: "nothing", keys: nil, want: []pairGroup{}},
		{name: "one user's room list", keys: []models.RoomUser{ru(3, 9), ru(1, 9), ru(2, 9)},
			want: []pairGroup{{rooms: []int64{1, 2, 3}, users: []int64{9}}}},
		{name: "one room's watchers", keys: []models.RoomUser{ru(5, 3), ru(5, 1), ru(5, 2), ru(5, 1)},
			want: []pairGroup{{rooms: []int64{5}, users: []int64{1, 2, 3}}}},
		{name: "a room list and a room's watchers together", keys: []models.RoomUser{ru(1, 9), ru(2, 9), ru(3, 9), ru(5, 1), ru(5, 2), ru(5, 9)},
			want: []pairGroup{{rooms: []int64{1, 2, 3}, users: []int64{9}}, {rooms: []int64{5}, users: []int64{1, 2, 9}}}},
		{name: "two room lists sharing a room", keys: []models.RoomUser{ru(1, 8), ru(2, 8), ru(1, 9), ru(3, 9)},
			want: []pairGroup{{rooms: []int64{1, 2}, users: []int64{8}}, {rooms: []int64{1, 3}, users: []int64{9}}}},
		{name: "two rooms' watchers sharing a user", keys: []models.RoomUser{ru(1, 8), ru(1, 9), ru(2, 9), ru(2, 7)},
			want: []pairGroup{{rooms: []int64{1}, users: []int64{8, 9}}, {rooms: []int64{2}, users: []int64{7, 9}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pairGroups(tt.keys)
			assert.Equal(t, tt.want, got)
			asked := map[models.RoomUser]bool{}
			for _, k := range tt.keys {
				asked[k] = true
			}
			covered := map[models.RoomUser]bool{}
			for _, g := range got {
				for _, r := range g.rooms {
					for _, u := range g.users {
						assert.True(t, asked[ru(r, u)], "pair %v was not asked for", ru(r, u))
						assert.False(t, covered[ru(r, u)], "pair %v twice", ru(r, u))
						covered[ru(r, u)] = true
					}
				}
			}
			assert.Len(t, covered, len(asked))
		})
	}
}

// TestMigrateRecordsActivity: rooms of a database from before rooms
// recorded their activity get it on the next start: their newest
// message's time, else their creation.
func TestMigrateRecordsActivity(t *testing.T) {
	ctx := t.Context()
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "old.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(ctx))
	ada, err := db.CreateUser(ctx, "ada")
	require.NoError(t, err)
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	busy, err := db.CreateRoom(ctx, "busy", 0, t0)
	require.NoError(t, err)
	quiet, err := db.CreateRoom(ctx, "quiet", 0, t0.Add(time.Minute))
	require.NoError(t, err)
	for i := range 3 {
		_, _, err := db.CreateMessage(ctx, busy, ada, "hi", func() time.Time { return t0.Add(time.Duration(10+i) * time.Minute) }, nil)
		require.NoError(t, err)
	}
	require.NoError(t, db.gorm.Exec("UPDATE rooms SET active_at = '1970-01-01 00:00:00'").Error, "as an old database")

	require.NoError(t, db.Migrate(ctx))
	got, err := db.Rooms(ctx, []int64{busy.ID, quiet.ID})
	require.NoError(t, err)
	assert.Equal(t, t0.Add(12*time.Minute), got[busy.ID].ActiveAt, "the newest message")
	assert.Equal(t, t0.Add(time.Minute), got[quiet.ID].ActiveAt, "no message: the creation")
}
