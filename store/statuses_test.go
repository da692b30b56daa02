package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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

// ids returns the IDs of statuses, in order.
func ids(statuses []*models.Status) []int64 {
	out := make([]int64, len(statuses))
	for i, s := range statuses {
		out[i] = s.ID
	}
	return out
}

// seq returns from, from+1, …, to (nil when to < from).
func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// post creates n statuses by author, texts "status 1"…, and returns them.
func post(tb testing.TB, db *store.DB, author *models.User, n int) []*models.Status {
	tb.Helper()
	out := make([]*models.Status, n)
	for i := range n {
		st, _, err := db.CreateStatus(tb.Context(), author, fmt.Sprintf("status %d", i+1), time.Now(), nil)
		require.NoError(tb, err)
		out[i] = st
	}
	return out
}

// assertSameEvent checks that a status read back is indistinguishable from
// the one CreateStatus returned: same values, same instant, same formatted
// time, same JSON.
func assertSameEvent(t *testing.T, live, replayed *models.Status) {
	t.Helper()
	assert.Equal(t, live, replayed)
	assert.True(t, live.CreatedAt.Equal(replayed.CreatedAt), "CreatedAt %v, read back %v", live.CreatedAt, replayed.CreatedAt)
	assert.Equal(t, live.CreatedAt.Format(time.RFC3339Nano), replayed.CreatedAt.Format(time.RFC3339Nano))
	if assert.NotNil(t, replayed.Author, "author not loaded") {
		assert.Equal(t, live.Author.ID, replayed.Author.ID)
		assert.Equal(t, live.Author.Name, replayed.Author.Name)
	}
	liveJSON, err := json.Marshal(live)
	require.NoError(t, err)
	replayedJSON, err := json.Marshal(replayed)
	require.NoError(t, err)
	assert.JSONEq(t, string(liveJSON), string(replayedJSON))
}

func TestCreateStatusReadsBackTheSame(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ctx := t.Context()
		author := newUser(t, db, "Zoë 🚀")
		tests := []struct {
			name string
			text string
			now  time.Time
		}{
			{
				name: "sub-millisecond digits in another zone",
				text: "hello",
				now:  time.Date(2025, 3, 30, 1, 59, 59, 123_456_789, time.FixedZone("CEST", 2*3600)),
			},
			{
				name: "whole second",
				text: "whole",
				now:  time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC),
			},
			{
				name: "last nanosecond of a day west of UTC",
				text: "late",
				now:  time.Date(2023, 12, 31, 23, 59, 59, 999_999_999, time.FixedZone("PST", -8*3600)),
			},
			{
				name: "wall clock with a monotonic reading",
				text: "now",
				now:  time.Now(),
			},
			{
				name: "four-byte characters at the length limit",
				text: strings.Repeat("😀", models.MaxStatusLength),
				now:  time.Now(),
			},
			{
				name: "quotes, wildcards and markup",
				text: `it's "100%" <b>_fine_</b> \o/`,
				now:  time.Now(),
			},
			{
				// On MySQL the driver writes arguments into the statement's
				// text (interpolateParams): what it escapes must come back.
				name: "escapes, NUL, Ctrl-Z and an injection attempt",
				text: "a\\'b\\\\'; DROP TABLE statuses; -- \x00 \x1a \n\r\t ? $1 `x` \\\"",
				now:  time.Now(),
			},
		}
		if dialect == store.Postgres {
			// PostgreSQL's text holds no NUL: models.StatusText refuses it
			// before it reaches any store.
			last := &tests[len(tests)-1]
			last.text = strings.ReplaceAll(last.text, "\x00", "")
		}
		var live []*models.Status
		for i, tt := range tests {
			st, _, err := db.CreateStatus(ctx, author, tt.text, tt.now, nil)
			require.NoError(t, err, tt.name)
			want := tt.now.UTC().Truncate(time.Millisecond)
			assert.Equal(t, int64(i+1), st.ID, "%s: ID", tt.name)
			assert.Equal(t, tt.text, st.Text, tt.name)
			assert.Equal(t, author.ID, st.AuthorID, tt.name)
			assert.Same(t, author, st.Author, tt.name)
			assert.Equal(t, time.UTC, st.CreatedAt.Location(), "%s: CreatedAt location", tt.name)
			assert.True(t, st.CreatedAt.Equal(want), "%s: CreatedAt %v, want %v", tt.name, st.CreatedAt, want)
			assert.Zero(t, st.CreatedAt.Nanosecond()%int(time.Millisecond), "%s: CreatedAt %v not truncated to the millisecond", tt.name, st.CreatedAt)
			live = append(live, st)
		}

		after, err := db.StatusesAfter(ctx, 0, 100)
		require.NoError(t, err)
		before, err := db.StatusesBefore(ctx, 0, 100)
		require.NoError(t, err)
		slices.Reverse(before)
		require.Len(t, after, len(tests))
		require.Len(t, before, len(tests))
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Run("StatusesAfter", func(t *testing.T) { assertSameEvent(t, live[i], after[i]) })
				t.Run("StatusesBefore", func(t *testing.T) { assertSameEvent(t, live[i], before[i]) })
			})
		}
	})
}

func TestCreateStatusFailureLeavesNoGap(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ctx := t.Context()
		author := newUser(t, db, "ada")
		post(t, db, author, 2)

		_, _, err := db.CreateStatus(ctx, &models.User{ID: author.ID + 1000, Name: "ghost"}, "from nobody", time.Now(), nil)
		require.Error(t, err, "a status by a user that does not exist was stored")

		head, err := db.Head(ctx, models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, int64(2), head, "the failed append moved the head")
		st, _, err := db.CreateStatus(ctx, author, "next", time.Now(), nil)
		require.NoError(t, err)
		assert.Equal(t, int64(3), st.ID)
		all, err := db.StatusesAfter(ctx, 0, 10)
		require.NoError(t, err)
		assert.Equal(t, seq(1, 3), ids(all))
	})
}

// TestStatusPaging: StatusesAfter pages oldest first and StatusesBefore
// newest first, each from any position (0 meaning the start or the head),
// with short pages at the end and none beyond; walking every page of any
// size, each from the last id of the one before, sees every status once.
func TestStatusPaging(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		post(t, db, newUser(t, db, "ada"), 7)

		t.Run("StatusesAfter", func(t *testing.T) {
			tests := []struct {
				name  string
				after int64
				limit int
				want  []int64
			}{
				{name: "from the start", after: 0, limit: 10, want: seq(1, 7)},
				{name: "first page", after: 0, limit: 3, want: seq(1, 3)},
				{name: "middle page", after: 3, limit: 2, want: seq(4, 5)},
				{name: "short last page", after: 5, limit: 10, want: seq(6, 7)},
				{name: "exactly the rest", after: 4, limit: 3, want: seq(5, 7)},
				{name: "at the head", after: 7, limit: 10, want: nil},
				{name: "beyond the head", after: 100, limit: 10, want: nil},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := db.StatusesAfter(t.Context(), tt.after, tt.limit)
					require.NoError(t, err)
					assert.Equal(t, tt.want, nilIfEmpty(ids(got)))
				})
			}
		})

		t.Run("StatusesBefore", func(t *testing.T) {
			tests := []struct {
				name   string
				before int64
				limit  int
				want   []int64
			}{
				{name: "newest page", before: 0, limit: 3, want: []int64{7, 6, 5}},
				{name: "everything", before: 0, limit: 10, want: []int64{7, 6, 5, 4, 3, 2, 1}},
				{name: "before the middle", before: 5, limit: 2, want: []int64{4, 3}},
				{name: "short last page", before: 3, limit: 10, want: []int64{2, 1}},
				{name: "before the first", before: 1, limit: 10, want: nil},
				{name: "before a position beyond the head", before: 100, limit: 2, want: []int64{7, 6}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := db.StatusesBefore(t.Context(), tt.before, tt.limit)
					require.NoError(t, err)
					assert.Equal(t, tt.want, nilIfEmpty(ids(got)))
				})
			}
		})

		t.Run("walking every page", func(t *testing.T) {
			for _, size := range []int{1, 2, 3, 7, 8} {
				newestFirst := walkPages(t, size, db.StatusesBefore)
				oldestFirst := walkPages(t, size, db.StatusesAfter)
				assert.Equal(t, []int64{7, 6, 5, 4, 3, 2, 1}, newestFirst, "pages of %d, newest first", size)
				assert.Equal(t, seq(1, 7), oldestFirst, "pages of %d, oldest first", size)
			}
		})
	})
}

// walkPages reads every page of size statuses through page (StatusesBefore
// or StatusesAfter), each from the last id of the one before, starting at 0
// and ending with the first empty page; it checks no page is longer than
// size and returns the ids in the order read.
func walkPages(t *testing.T, size int, page func(ctx context.Context, cursor int64, limit int) ([]*models.Status, error)) []int64 {
	t.Helper()
	var out []int64
	for cursor := int64(0); ; {
		p, err := page(t.Context(), cursor, size)
		require.NoError(t, err)
		require.LessOrEqual(t, len(p), size)
		if len(p) == 0 {
			return out
		}
		out = append(out, ids(p)...)
		cursor = p[len(p)-1].ID
	}
}

func nilIfEmpty(s []int64) []int64 {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestHead(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		ctx := t.Context()
		head, err := db.Head(ctx, models.StatusStream)
		require.NoError(t, err)
		assert.Zero(t, head, "fresh database")

		posted := post(t, db, newUser(t, db, "ada"), 3)
		head, err = db.Head(ctx, models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, posted[len(posted)-1].ID, head)

		logHead, err := db.StatusLog().Head(ctx, models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, head, logHead, "StatusLog.Head")

		other, err := db.Head(ctx, "no-such-stream")
		require.NoError(t, err)
		assert.Zero(t, other, "unknown stream")
	})
}

func TestCreateStatusConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		author := newUser(t, db, "ada")
		const writers, perWriter = 8, 25
		got := make([][]*models.Status, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					st, _, err := db.CreateStatus(t.Context(), author, fmt.Sprintf("writer %d post %d", w, i), time.Now(), nil)
					if !assert.NoError(t, err, "writer %d post %d", w, i) {
						return
					}
					got[w] = append(got[w], st)
				}
			})
		}
		wg.Wait()
		require.False(t, t.Failed(), "some writes failed")

		texts := make(map[int64]string)
		var all []int64
		for w, sts := range got {
			assert.True(t, slices.IsSortedFunc(sts, func(a, b *models.Status) int { return int(a.ID - b.ID) }),
				"writer %d got decreasing IDs %v", w, ids(sts))
			for _, st := range sts {
				all = append(all, st.ID)
				texts[st.ID] = st.Text
			}
		}
		slices.Sort(all)
		require.Equal(t, seq(1, writers*perWriter), all, "IDs handed out")

		head, err := db.Head(t.Context(), models.StatusStream)
		require.NoError(t, err)
		assert.Equal(t, int64(writers*perWriter), head)

		stored, err := db.StatusesAfter(t.Context(), 0, 1000)
		require.NoError(t, err)
		require.Equal(t, seq(1, writers*perWriter), ids(stored), "IDs stored")
		for _, st := range stored {
			assert.Equal(t, texts[st.ID], st.Text, "status %d", st.ID)
		}
	})
}

// TestCommitOrder checks what resuming relies on: whatever Head reports,
// every status up to it is readable, so the committed statuses always form a
// prefix 1..n.
func TestCommitOrder(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		author := newUser(t, db, "ada")
		const writers, perWriter = 4, 50
		done := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					_, _, err := db.CreateStatus(t.Context(), author, fmt.Sprintf("writer %d post %d", w, i), time.Now(), nil)
					if !assert.NoError(t, err) {
						return
					}
				}
			})
		}
		t.Cleanup(wg.Wait) // a failing reader must not leave writers behind the store's Close
		go func() { wg.Wait(); close(done) }()

		check := func() int64 {
			head, err := db.Head(t.Context(), models.StatusStream)
			require.NoError(t, err)
			list, err := db.StatusesAfter(t.Context(), 0, 1000)
			require.NoError(t, err)
			got := ids(list)
			require.GreaterOrEqual(t, len(got), int(head), "head is %d but only %d statuses are readable: %v", head, len(got), got)
			require.Equal(t, seq(1, int64(len(got))), nilIfEmpty(got), "the readable statuses are not a prefix (head %d)", head)
			return head
		}
		reads, sawProgress := 0, false
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			head := check()
			reads++
			sawProgress = sawProgress || (head > 0 && head < writers*perWriter)
		}
		assert.Equal(t, int64(writers*perWriter), check())
		t.Logf("%d consistent reads while writing", reads)
		if !sawProgress {
			t.Log("the reader never observed a partly written stream; the property was checked only at the ends")
		}
	})
}
