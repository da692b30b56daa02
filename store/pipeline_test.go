package store_test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// mysqlCommands counts the commands clients send to MySQL through a fault
// proxy's tap: each is a round trip. A packet is a 3-byte length and a
// sequence number, and a command's first packet is number 0.
type mysqlCommands struct {
	mu      sync.Mutex
	partial map[net.Conn][]byte // a packet header not all read yet
	skip    map[net.Conn]int    // what is left of a packet's payload
	n       int
}

func (m *mysqlCommands) tap(c net.Conn, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.partial == nil {
		m.partial, m.skip = map[net.Conn][]byte{}, map[net.Conn]int{}
	}
	buf := append(m.partial[c], b...)
	for {
		k := min(m.skip[c], len(buf))
		buf, m.skip[c] = buf[k:], m.skip[c]-k
		if len(buf) < 4 {
			break
		}
		if buf[3] == 0 {
			m.n++
		}
		m.skip[c] = int(buf[0]) | int(buf[1])<<8 | int(buf[2])<<16
		buf = buf[4:]
	}
	m.partial[c] = bytes.Clone(buf)
}

func (m *mysqlCommands) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// postHeld posts texts to room, each queued behind the others while the
// room's appends are held, and then released to commit in one batch; it
// returns each one's message or error, in order.
func postHeld(t *testing.T, db *store.DB, room *models.Room, author *models.User, texts []string) ([]*models.Message, []error) {
	t.Helper()
	stream := models.RoomStream(room.ID)
	release := db.HoldAppends(stream)
	msgs, errs := make([]*models.Message, len(texts)), make([]error, len(texts))
	var wg sync.WaitGroup
	for i, text := range texts {
		waitPending(t, db, stream, i) // one after the other: positions follow i
		wg.Go(func() { msgs[i], _, errs[i] = db.CreateMessage(t.Context(), room, author, text, time.Now, nil) })
	}
	waitPending(t, db, stream, len(texts))
	release()
	wg.Wait()
	return msgs, errs
}

// TestAppendBatchIsTwoRoundTripsOnMySQL: a batch of messages holds its
// room's head row from moving the head until its COMMIT, and every other
// batch of the room waits for it; on MySQL it is sent as two queries (what
// comes before the positions, then the rest with COMMIT) instead of one
// statement at a time. With interpolateParams=false each statement is a
// prepared statement, which cannot carry several: the batch still commits,
// a statement at a time.
func TestAppendBatchIsTwoRoundTripsOnMySQL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		query     string
		pipelined bool
	}{
		{"", true},
		{"interpolateParams=false", false},
	} {
		t.Run("url="+tt.query, func(t *testing.T) {
			t.Parallel()
			db, proxy := openBehindProxyWith(t, tt.query, store.Options{})
			ada := newUser(t, db, "ada")
			bob := newUser(t, db, "bob")
			room, err := db.CreateRoom(t.Context(), "busy", ada.ID, time.Now())
			require.NoError(t, err)
			_, _, err = db.CreateMessage(t.Context(), room, ada, "first", time.Now, nil) // the stream's row
			require.NoError(t, err)

			var commands mysqlCommands
			proxy.Tap(commands.tap)
			texts := make([]string, 20)
			for i := range texts {
				texts[i] = fmt.Sprintf("post %d", i)
			}
			msgs, errs := postHeld(t, db, room, bob, texts)
			proxy.Tap(nil)
			for i := range msgs {
				require.NoError(t, errs[i])
				assert.Equal(t, int64(i+2), msgs[i].Seq, "position of post %d", i)
			}
			t.Logf("a batch of %d messages: %d commands", len(texts), commands.count())
			if tt.pipelined {
				assert.Equal(t, 2, commands.count(), "commands for the batch")
			} else {
				assert.Greater(t, commands.count(), 5, "commands for the batch, a statement at a time")
			}

			// Everything the batch writes is there: the messages, the room's
			// activity, the author's read mark.
			stored, err := db.MessagesAfter(t.Context(), room.ID, 0, 100)
			require.NoError(t, err)
			assert.Equal(t, seq(1, int64(len(texts)+1)), seqs(stored))
			got, err := db.RoomFor(t.Context(), room.ID, bob.ID)
			require.NoError(t, err)
			last := msgs[len(msgs)-1]
			assert.True(t, got.ActiveAt.Equal(last.CreatedAt), "room active at %v, last message at %v", got.ActiveAt, last.CreatedAt)
			unread, err := db.UnreadCounts(t.Context(), []models.RoomUser{{Room: room.ID, User: bob.ID}, {Room: room.ID, User: ada.ID}})
			require.NoError(t, err)
			assert.Equal(t, 0, unread[models.RoomUser{Room: room.ID, User: bob.ID}], "bob has read up to his last message")
			assert.Equal(t, len(texts), unread[models.RoomUser{Room: room.ID, User: ada.ID}], "ada has read none of bob's")
		})
	}
}

// TestAppendBatchFailingAfterItsPositionsCommitsNothing: a batch whose
// write fails after the head has moved (here a message longer than its
// column, which MySQL refuses in strict mode) stops there, before its
// COMMIT: nothing of it stays, not the head moved, not the messages before
// the failing one. Each append then runs alone: the others commit with no
// gap and the failing one fails by itself.
func TestAppendBatchFailingAfterItsPositionsCommitsNothing(t *testing.T) {
	t.Parallel()
	db, _ := openBehindProxyWith(t, "", store.Options{})
	ada := newUser(t, db, "ada")
	room, err := db.CreateRoom(t.Context(), "busy", ada.ID, time.Now())
	require.NoError(t, err)
	_, _, err = db.CreateMessage(t.Context(), room, ada, "first", time.Now, nil)
	require.NoError(t, err)

	texts := []string{"a", "b", strings.Repeat("x", 3000), "c", "d"}
	msgs, errs := postHeld(t, db, room, ada, texts)
	require.Error(t, errs[2], "the message too long for its column")
	var got []string
	for i, m := range msgs {
		if i == 2 {
			continue
		}
		require.NoError(t, errs[i], "post %q", texts[i])
		got = append(got, m.Text)
	}
	assert.Equal(t, []string{"a", "b", "c", "d"}, got)
	stored, err := db.MessagesAfter(t.Context(), room.ID, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, seq(1, 5), seqs(stored), "no gap, no duplicate")
	head, err := db.Head(t.Context(), models.RoomStream(room.ID))
	require.NoError(t, err)
	assert.Equal(t, int64(5), head, "the failed batch's head moved nowhere")
}

// TestConnectionsStayWithinThePools: the store opens at most its pools'
// sizes (on MySQL 32, and 16 for append batches; 32 on PostgreSQL; 8 on
// SQLite), and the
// connections it reports open count both pools, however many rooms are
// written to at once.
func TestConnectionsStayWithinThePools(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		want := map[store.Dialect]int{store.MySQL: 48, store.Postgres: 32, store.SQLite: 8}[dialect]
		assert.Equal(t, want, db.MaxConnections())
		ada := newUser(t, db, "ada")
		var wg sync.WaitGroup
		for i := range 40 {
			room, err := db.CreateRoom(t.Context(), fmt.Sprintf("room %d", i), ada.ID, time.Now())
			require.NoError(t, err)
			for range 3 {
				wg.Go(func() {
					_, _, err := db.CreateMessage(t.Context(), room, ada, "hi", time.Now, nil)
					assert.NoError(t, err)
				})
			}
		}
		wg.Wait()
		open := db.OpenConnections()
		t.Logf("%s: %d connections open after writing to 40 rooms at once", dialect, open)
		assert.LessOrEqual(t, open, want)
	})
}
