package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// waitPending waits until n appends wait for stream.
func waitPending(t *testing.T, db *store.DB, stream string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return db.PendingAppends(stream) == n }, 10*time.Second, time.Millisecond,
		"%d appends queued for %s", n, stream)
}

// TestConcurrentAppendsCommitTogether: statuses and messages posted while
// their stream is busy are committed in one transaction, so that the head
// row's lock is taken once for all of them, with a handful of statements
// for the whole batch (head, read back but on MySQL, one INSERT of all the events, the
// room's activity and the author's read mark) instead of three per status
// and five per message; their positions are still 1..n, each once, in the
// order they came.
func TestConcurrentAppendsCommitTogether(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ada := newUser(t, db, "ada")
		room, err := db.CreateRoom(t.Context(), "busy", ada.ID, time.Now())
		require.NoError(t, err)
		_, _, err = db.CreateStatus(t.Context(), ada, "first", time.Now(), nil)
		require.NoError(t, err)
		_, _, err = db.CreateMessage(t.Context(), room, ada, "first", time.Now, nil)
		require.NoError(t, err)

		const n = 40
		appends := []struct {
			name       string
			stream     string
			write      func(i int) (int64, error)
			statements int // without batching
		}{
			{"status", models.StatusStream, func(i int) (int64, error) {
				st, _, err := db.CreateStatus(t.Context(), ada, fmt.Sprintf("post %d", i), time.Now(), nil)
				if err != nil {
					return 0, err
				}
				return st.ID, nil
			}, 3},
			{"message", models.RoomStream(room.ID), func(i int) (int64, error) {
				m, _, err := db.CreateMessage(t.Context(), room, ada, fmt.Sprintf("post %d", i), time.Now, nil)
				if err != nil {
					return 0, err
				}
				return m.Seq, nil
			}, 5},
		}
		for _, a := range appends {
			release := db.HoldAppends(a.stream)
			before := db.Statements()
			got := make([]int64, n)
			var wg sync.WaitGroup
			for i := range n {
				waitPending(t, db, a.stream, i) // one after the other: positions follow i
				wg.Go(func() {
					pos, err := a.write(i)
					assert.NoError(t, err)
					got[i] = pos
				})
			}
			waitPending(t, db, a.stream, n)
			release()
			wg.Wait()
			assert.Equal(t, seq(2, n+1), got, "%s positions, in the order they came", a.name)
			statements := db.Statements() - before
			t.Logf("%d %s appends: %d statements", n, a.name, statements)
			assert.LessOrEqual(t, statements, uint64(6), "%s statements for %d appends (alone: %d each)", a.name, n, a.statements)
		}
		stored, err := db.StatusesAfter(t.Context(), 0, 100)
		require.NoError(t, err)
		assert.Equal(t, seq(1, n+1), ids(stored))
		msgs, err := db.MessagesAfter(t.Context(), room.ID, 0, 100)
		require.NoError(t, err)
		assert.Equal(t, seq(1, n+1), seqs(msgs))
	})
}

// TestAppendAloneReadsNoHeadOnMySQL: a status appended alone is the head
// moved, the head read back and the INSERT; on MySQL and PostgreSQL moving
// the head answers the new head too (LAST_INSERT_ID, RETURNING), so it is
// one fewer, under the head row's lock that every writer of the stream
// waits for.
func TestAppendAloneReadsNoHeadOnMySQL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ada := newUser(t, db, "ada")
		var ids []int64
		for i := range 3 {
			before := db.Statements()
			st, _, err := db.CreateStatus(t.Context(), ada, fmt.Sprintf("post %d", i), time.Now(), nil)
			require.NoError(t, err)
			ids = append(ids, st.ID)
			if i == 0 {
				continue // the stream's row is made on first use
			}
			want := uint64(3)
			if dialect != store.SQLite {
				want = 2
			}
			assert.Equal(t, want, db.Statements()-before, "statements of append %d", i)
		}
		assert.Equal(t, []int64{1, 2, 3}, ids)
		head, err := db.Head(t.Context(), models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, int64(3), head)
	})
}

// TestAppendFailingABatchFailsAlone: one append that fails its batch (here
// a key claimed twice in it) costs the others nothing: they commit, with no
// gap, and of the two appends with one key, one commits and the other
// replays it.
func TestAppendFailingABatchFailsAlone(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ada := newUser(t, db, "ada")
		release := db.HoldAppends(models.StatusStream)
		type result struct {
			st       *models.Status
			replayed bool
		}
		results := make([]result, 6)
		var wg sync.WaitGroup
		for i := range results {
			waitPending(t, db, models.StatusStream, i)
			wg.Go(func() {
				var key *models.Idempotency
				text := fmt.Sprintf("post %d", i)
				if i == 2 || i == 4 {
					text = "the same"
					var err error
					key, err = models.NewIdempotency(ada, models.OpPostStatus, "k", text)
					require.NoError(t, err)
				}
				st, replayed, err := db.CreateStatus(t.Context(), ada, text, time.Now(), key)
				assert.NoError(t, err)
				results[i] = result{st, replayed}
			})
		}
		waitPending(t, db, models.StatusStream, len(results))
		release()
		wg.Wait()
		assert.Equal(t, results[2].st.ID, results[4].st.ID, "one key, one status")
		assert.True(t, results[2].replayed != results[4].replayed, "one of them replays the other")
		stored, err := db.StatusesAfter(t.Context(), 0, 100)
		require.NoError(t, err)
		assert.Equal(t, seq(1, 5), ids(stored), "no gap, no duplicate")
	})
}

// TestQueuedAppendKeepsItsDeadline: an append that waits for its stream
// past its deadline gives up with UNAVAILABLE, as a statement would, and
// leaves no trace; the others commit.
func TestQueuedAppendKeepsItsDeadline(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ada := newUser(t, db, "ada")
	release := db.HoldAppends(models.StatusStream)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := db.CreateStatus(ctx, ada, "too late", time.Now(), nil)
	assert.Equal(t, models.Unavailable, models.ErrorCode(err), "%v", err)
	assert.Less(t, time.Since(start), time.Second)
	assert.Zero(t, db.PendingAppends(models.StatusStream), "it left the queue")
	done := make(chan *models.Status)
	go func() {
		st, _, err := db.CreateStatus(t.Context(), ada, "in time", time.Now(), nil)
		assert.NoError(t, err)
		done <- st
	}()
	waitPending(t, db, models.StatusStream, 1)
	release()
	assert.Equal(t, int64(1), (<-done).ID)
	stored, err := db.StatusesAfter(t.Context(), 0, 10)
	require.NoError(t, err)
	require.Len(t, stored, 1)
	assert.Equal(t, "in time", stored[0].Text)
}

// TestBatchedMessagesMarkEachAuthorRead: messages of several authors
// committed in one batch leave each author's read mark at their own last
// message, exactly as the same messages posted one by one do.
func TestBatchedMessagesMarkEachAuthorRead(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		authors := []*models.User{newUser(t, db, "ada"), newUser(t, db, "bob"), newUser(t, db, "cy")}
		alone, err := db.CreateRoom(t.Context(), "alone", authors[0].ID, time.Now())
		require.NoError(t, err)
		batched, err := db.CreateRoom(t.Context(), "batched", authors[0].ID, time.Now())
		require.NoError(t, err)
		const n = 8
		for i := range n {
			_, _, err := db.CreateMessage(t.Context(), alone, authors[i%3], fmt.Sprintf("post %d", i), time.Now, nil)
			require.NoError(t, err)
		}
		release := db.HoldAppends(models.RoomStream(batched.ID))
		var wg sync.WaitGroup
		for i := range n {
			waitPending(t, db, models.RoomStream(batched.ID), i)
			wg.Go(func() {
				_, _, err := db.CreateMessage(t.Context(), batched, authors[i%3], fmt.Sprintf("post %d", i), time.Now, nil)
				assert.NoError(t, err)
			})
		}
		waitPending(t, db, models.RoomStream(batched.ID), n)
		release()
		wg.Wait()
		var keys []models.RoomUser
		for _, a := range authors {
			keys = append(keys, models.RoomUser{Room: alone.ID, User: a.ID}, models.RoomUser{Room: batched.ID, User: a.ID})
		}
		unread, err := db.UnreadCounts(t.Context(), keys)
		require.NoError(t, err)
		for _, a := range authors {
			assert.Equal(t, unread[models.RoomUser{Room: alone.ID, User: a.ID}], unread[models.RoomUser{Room: batched.ID, User: a.ID}],
				"%s's unread count", a.Name)
		}
		t.Logf("unread: %v", unread)
	})
}

// BenchmarkAppendStatus: statuses appended by 16 writers per processor at
// once, as postStatus under load does (one writer per processor on SQLite,
// whose writes queue anyway); each op is one status.
func BenchmarkAppendStatus(b *testing.B) {
	for _, dialect := range []store.Dialect{store.SQLite, store.MySQL} {
		b.Run(string(dialect), func(b *testing.B) {
			db := storetest.Open(b, dialect)
			ada := newUser(b, db, "ada")
			if dialect == store.MySQL {
				b.SetParallelism(16)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := db.CreateStatus(context.Background(), ada, "bench", time.Now(), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
