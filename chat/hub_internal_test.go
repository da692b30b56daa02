package chat

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestIsOwnAnnouncement: a replica knows its own presence announcements
// from their first bytes, whatever they carry, and no other replica's,
// not even one whose id begins like its own.
func TestIsOwnAnnouncement(t *testing.T) {
	h := newHub(nil, 0, 0, nil)
	marshal := func(m presenceMsg) []byte {
		t.Helper()
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	users := map[int64][]*models.User{1: {{ID: 7, Name: "ada"}}}
	for _, m := range []presenceMsg{{Full: true, Rooms: users}, {Rooms: users}, {Bye: true}, {Hello: true, Full: true}, {}} {
		m.Replica = h.replica
		assert.True(t, h.isOwn(marshal(m)), "%+v", m)
		m.Replica = h.replica + "0"
		assert.False(t, h.isOwn(marshal(m)), "%+v", m)
		m.Replica = "other"
		assert.False(t, h.isOwn(marshal(m)), "%+v", m)
	}
	assert.False(t, h.isOwn(nil))
	assert.False(t, h.isOwn(h.ownPrefix), "cut short")
}
