package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// sessionID is a session id made from n.
func sessionID(n int) string { return fmt.Sprintf("%032x", n) }

// TestSessions: a session round-trips with its roles and times; revoking
// marks it once; a user's sessions are revoked together; the revoked ones
// are listed by time of revocation; ended ones are pruned.
func TestSessions(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ctx := t.Context()
		ada, bob := newUser(t, db, "ada"), newUser(t, db, "bob")
		start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
		create := func(n int, u *models.User, roles []models.Role, ttl time.Duration) {
			require.NoError(t, db.CreateSession(ctx, &models.SessionRecord{ID: sessionID(n), UserID: u.ID, Roles: roles, CreatedAt: start, ExpiresAt: start.Add(ttl)}))
		}
		create(1, ada, []models.Role{models.RoleAdmin, models.RolePublisher}, time.Hour)
		create(2, ada, nil, 24*time.Hour)
		create(3, ada, nil, time.Minute) // ends before the revocations below
		create(4, bob, nil, 24*time.Hour)

		s, err := db.Session(ctx, sessionID(1))
		require.NoError(t, err)
		assert.Equal(t, &models.SessionRecord{ID: sessionID(1), UserID: ada.ID, Roles: []models.Role{models.RoleAdmin, models.RolePublisher},
			CreatedAt: start, ExpiresAt: start.Add(time.Hour)}, s)
		_, err = db.Session(ctx, sessionID(99))
		assert.Equal(t, models.NotFound, models.ErrorCode(err))

		at := start.Add(10 * time.Minute)
		revoked, err := db.RevokeSession(ctx, sessionID(4), at)
		require.NoError(t, err)
		assert.True(t, revoked)
		revoked, err = db.RevokeSession(ctx, sessionID(4), at.Add(time.Minute))
		require.NoError(t, err)
		assert.False(t, revoked, "once")
		_, err = db.RevokeSession(ctx, sessionID(99), at)
		assert.Equal(t, models.NotFound, models.ErrorCode(err))
		s, err = db.Session(ctx, sessionID(4))
		require.NoError(t, err)
		require.NotNil(t, s.RevokedAt)
		assert.Equal(t, at, *s.RevokedAt, "the first revocation counts")
		assert.True(t, s.Ended(at))
		assert.False(t, s.Ended(at.Add(-time.Second)) && s.RevokedAt == nil)

		later := start.Add(20 * time.Minute)
		ids, err := db.RevokeUserSessions(ctx, ada.ID, later)
		require.NoError(t, err)
		assert.Equal(t, []string{sessionID(1), sessionID(2)}, ids, "the sessions of ada that had not ended")
		s, err = db.Session(ctx, sessionID(3))
		require.NoError(t, err)
		assert.Nil(t, s.RevokedAt, "an ended session is left as it is")

		ids, err = db.RevokedSince(ctx, at, later)
		require.NoError(t, err)
		assert.Equal(t, []string{sessionID(4), sessionID(1), sessionID(2)}, ids, "by time of revocation")
		ids, err = db.RevokedSince(ctx, later, later)
		require.NoError(t, err)
		assert.Equal(t, []string{sessionID(1), sessionID(2)}, ids, "from since on")
		ids, err = db.RevokedSince(ctx, at, start.Add(2*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, []string{sessionID(4), sessionID(2)}, ids, "not those that have ended")

		n, err := db.PruneSessions(ctx, start.Add(2*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(2), n, "sessions 1 and 3 ended")
		_, err = db.Session(ctx, sessionID(1))
		assert.Equal(t, models.NotFound, models.ErrorCode(err))
	})
}
