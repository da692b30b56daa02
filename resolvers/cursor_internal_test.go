package resolvers

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestRoomCursors: a room list cursor carries the list's moment and the
// room's place, to the millisecond; anything else is BAD_USER_INPUT.
func TestRoomCursors(t *testing.T) {
	asOf := time.Date(2026, 11, 23, 12, 49, 55, 123_000_000, time.UTC)
	for _, place := range []models.RoomPlace{
		{Joined: true, ActiveAt: asOf.Add(-time.Hour), ID: 42},
		{Joined: false, ActiveAt: asOf.Add(-time.Millisecond), ID: 1 << 40},
	} {
		got, err := decodeRoomCursor(encodeRoomCursor(asOf, place))
		require.NoError(t, err)
		assert.Equal(t, &models.RoomListCursor{AsOf: asOf, After: place}, got)
	}
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{"", "not base64!", raw("room:1:1:1"), raw("status:1:1:1:1"), raw("room:1:2:1:1"),
		raw("room:x:1:1:1"), raw("room:1:1:1:0"), raw("room:1:1:-5:1"), encodeCursor("status", 7)} {
		_, err := decodeRoomCursor(bad)
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "cursor %q", bad)
	}
}
