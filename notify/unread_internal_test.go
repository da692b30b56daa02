package notify

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/live/livetest"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// TestCountsMeetTheStream: a count read from the database is exact at a
// position of the stream; the notifications applied while it was read are
// added to it if they came after that position, and not again if they did
// not; a count too old to bring up to date is read again.
func TestCountsMeetTheStream(t *testing.T) {
	synctest.Test(t, testCountsMeetTheStream)
}

func testCountsMeetTheStream(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ada := &models.User{ID: 1, CreatedAt: created}
	to := func(id, userID int64) *models.Notification {
		n := &models.Notification{ID: id, CreatedAt: created.Add(time.Hour)}
		if userID != 0 {
			n.RecipientID = &userID
		}
		return n
	}
	var (
		during func() // runs while the count is read
		result int    // what the read finds
		head   int64  // the position it is exact at
		reads  int    // how many reads ran
	)
	uc := newUnreadCounts(func(_ context.Context, users []*models.User) ([]store.UnreadCount, error) {
		reads++
		if during != nil {
			during()
			during = nil
		}
		return []store.UnreadCount{{UserID: users[0].ID, Unread: result, Head: head}}, nil
	}, slog.New(slog.DiscardHandler), nil)
	ctx := t.Context()

	uc.apply(to(4, 0)) // this replica follows the stream from position 3
	type watched struct {
		c   <-chan int
		err error
	}
	got := make(chan watched)
	go func() {
		c, err := uc.watch(ctx, ctx, ada)
		got <- watched{c, err}
	}()
	synctest.Wait()
	require.Len(t, uc.wake, 1, "ada's first count is queued")
	// The read sees the stream up to 5; 5, 6 (hers) and 7 (bob's) are
	// applied while it runs.
	result, head = 2, 5
	during = func() { uc.apply(to(5, 1)); uc.apply(to(6, 0)); uc.apply(to(7, 2)) }
	require.NoError(t, uc.readPending(ctx))
	w := <-got
	require.NoError(t, w.err)
	assert.Equal(t, []int{3}, livetest.Received(t, w.c), "2 up to 5, and 6")

	uc.apply(to(8, 1))
	assert.Equal(t, []int{4}, livetest.Received(t, w.c), "8 applied")

	// A read that sees further than the stream applied so far: what it saw
	// is not added again.
	uc.recount(ada.ID)
	result, head = 6, 10
	require.NoError(t, uc.readPending(ctx))
	assert.Equal(t, []int{6}, livetest.Received(t, w.c), "4, and 9 and 10, hers")
	uc.apply(to(9, 1))
	uc.apply(to(10, 0))
	assert.Empty(t, livetest.Received(t, w.c), "9 and 10 counted already")
	uc.apply(to(11, 1))
	assert.Equal(t, []int{7}, livetest.Received(t, w.c), "11 applied")

	// A read that is too old to be brought up to date is read again.
	for i := range int64(2*recentSize + 1) {
		uc.apply(to(12+i, 2))
	}
	uc.recount(ada.ID)
	result, head, reads = 1, 11, 0
	require.NoError(t, uc.readPending(ctx))
	assert.Equal(t, 1, reads)
	assert.Empty(t, livetest.Received(t, w.c), "not up to date: not sent")
	result, head = 1, 12+2*recentSize
	require.NoError(t, uc.readPending(ctx))
	assert.Equal(t, 2, reads, "read again")
	assert.Equal(t, []int{1}, livetest.Received(t, w.c))
}
