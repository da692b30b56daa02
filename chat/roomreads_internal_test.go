package chat

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// TestRoomReadsTakeTheirLocksInOneOrder: changes of a room and reads of it
// by its users' watchers, running at once, all finish. A reader that
// dropped a generation held the generation's lock and waited for the
// reads' lock, which a change held while it waited for the generation's:
// both hung, and every room-list change with them.
func TestRoomReadsTakeTheirLocksInOneOrder(t *testing.T) {
	rr := newRoomReads(func(_ context.Context, roomID int64, users []int64) (map[int64]*models.Room, error) {
		out := make(map[int64]*models.Room, len(users))
		for _, u := range users {
			out[u] = &models.Room{ID: roomID}
		}
		return out, nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 300 {
					rr.changed(1, []int64{1, 2})
				}
			})
			for _, user := range []int64{1, 2} {
				wg.Go(func() {
					for range 300 {
						_, _ = rr.get(t.Context(), 1, user)
					}
				})
			}
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("changes and reads of one room hang")
	}
}
