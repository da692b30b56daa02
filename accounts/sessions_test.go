package accounts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/accounts"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// openStore opens and migrates the database at url, closed when the test
// ends.
func openStore(t *testing.T, url string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), url, store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(t.Context()))
	return db
}

// newSession records a session of a new user, standing for an hour from
// now, and returns its id and user.
func newSession(t *testing.T, db *store.DB, n int) (string, int64) {
	t.Helper()
	u, err := db.CreateUser(t.Context(), "u")
	require.NoError(t, err)
	id := fmt.Sprintf("%032x", n)
	now := time.Now().UTC()
	require.NoError(t, db.CreateSession(t.Context(), &models.SessionRecord{ID: id, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	return id, u.ID
}

// replica is a Sessions as one server runs it, and the sessions it was
// told ended.
type replica struct {
	*accounts.Sessions
	ended chan string
}

// startReplica starts Sessions on db and broker, rechecking every recheck.
func startReplica(t *testing.T, db *store.DB, broker pubsub.Broker, recheck time.Duration) *replica {
	t.Helper()
	r := &replica{ended: make(chan string, 16)}
	r.Sessions = accounts.NewSessions(db, broker, accounts.SessionsOptions{Recheck: recheck, Ended: func(ids []string) {
		for _, id := range ids {
			r.ended <- id
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	t.Cleanup(func() { cancel(); r.Close() })
	return r
}

// waitEnded waits for r to be told that id ended, and says how long it
// took.
func (r *replica) waitEnded(t *testing.T, id string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		select {
		case got := <-r.ended:
			if got == id {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("not told within %s that session %s ended", within, id)
		}
	}
}

// TestSessionsEndOnEveryReplica: a session revoked through one replica is
// refused by another at once when they share a broker, and within the
// recheck interval when the announcement cannot reach it (no shared
// broker), on SQLite and MySQL.
func TestSessionsEndOnEveryReplica(t *testing.T) {
	for _, dialect := range storetest.Backends {
		t.Run(string(dialect), func(t *testing.T) {
			url := storetest.URL(t, dialect)
			dbA, dbB := openStore(t, url), openStore(t, url)

			t.Run("announced", func(t *testing.T) {
				shared := mempubsub.New(0)
				t.Cleanup(func() { _ = shared.Close() })
				a, b := startReplica(t, dbA, shared, time.Hour), startReplica(t, dbB, shared, time.Hour)
				id, user := newSession(t, dbA, 1)
				require.NoError(t, a.Check(t.Context(), id, user), "seen standing, and remembered")
				revoked, err := b.Revoke(t.Context(), id)
				require.NoError(t, err)
				assert.True(t, revoked)
				t.Logf("replica A told after %s", a.waitEnded(t, id, 5*time.Second))
				err = a.Check(t.Context(), id, user)
				assert.Equal(t, models.Unauthenticated, models.ErrorCode(err))
				assert.EqualError(t, err, "session ended: sign in again")
			})

			t.Run("rechecked", func(t *testing.T) {
				const recheck = 100 * time.Millisecond
				own := func() pubsub.Broker {
					b := mempubsub.New(0)
					t.Cleanup(func() { _ = b.Close() })
					return b
				}
				a, b := startReplica(t, dbA, own(), recheck), startReplica(t, dbB, own(), recheck)
				id, user := newSession(t, dbA, 2)
				require.NoError(t, a.Check(t.Context(), id, user))
				ids, err := b.RevokeUser(t.Context(), user)
				require.NoError(t, err)
				assert.Equal(t, []string{id}, ids)
				took := a.waitEnded(t, id, 5*time.Second)
				t.Logf("replica A found it in the database after %s", took)
				assert.Less(t, took, 2*time.Second, "within a few rechecks")
				assert.Equal(t, models.Unauthenticated, models.ErrorCode(a.Check(t.Context(), id, user)))
			})
		})
	}
}

// TestSessionsCheckFromMemory: a session seen lately is checked without the
// database; one never seen, or seen longer ago than a few minutes, needs
// it, and is refused with UNAVAILABLE while it is down. Unknown sessions,
// and sessions named with another user, are refused.
func TestSessionsCheckFromMemory(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	c := newClock()
	c.t = time.Now().UTC()
	sessions := accounts.NewSessions(db, nil, accounts.SessionsOptions{Now: c.now})
	id, user := newSession(t, db, 1)
	unseen, unseenUser := newSession(t, db, 2)
	require.NoError(t, sessions.Check(t.Context(), id, user))
	err := sessions.Check(t.Context(), id, user+1)
	assert.EqualError(t, err, "invalid token", "a session of another user")
	err = sessions.Check(t.Context(), fmt.Sprintf("%032x", 3), user)
	assert.EqualError(t, err, "session ended: sign in again", "no such session")

	require.NoError(t, db.Close())
	assert.NoError(t, sessions.Check(t.Context(), id, user), "from memory: no query")
	err = sessions.Check(t.Context(), unseen, unseenUser)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "never seen: the database must answer")
	c.advance(5 * time.Minute)
	assert.Equal(t, models.Unavailable, models.ErrorCode(sessions.Check(t.Context(), id, user)), "seen too long ago")
}

// BenchmarkSessionsCheck: what checking a token's session costs, seen
// lately (from memory) and never seen (a database read, SQLite).
func BenchmarkSessionsCheck(b *testing.B) {
	db := storetest.Open(b, store.SQLite)
	u, err := db.CreateUser(b.Context(), "u")
	require.NoError(b, err)
	now := time.Now().UTC()
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
		require.NoError(b, db.CreateSession(b.Context(), &models.SessionRecord{ID: ids[i], UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	}
	b.Run("remembered", func(b *testing.B) {
		s := accounts.NewSessions(db, nil, accounts.SessionsOptions{})
		require.NoError(b, s.Check(b.Context(), ids[0], u.ID))
		for b.Loop() {
			_ = s.Check(b.Context(), ids[0], u.ID)
		}
	})
	b.Run("read", func(b *testing.B) {
		s := accounts.NewSessions(db, nil, accounts.SessionsOptions{CacheSize: 1})
		i := 0
		for b.Loop() {
			_ = s.Check(b.Context(), ids[i%len(ids)], u.ID)
			i++
		}
	})
}
