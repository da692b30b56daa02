package notify

import (
	"context"
	"strconv"
	"sync"

	"github.com/switchboardhq/switchboard/live"
)

// unreadFeed is one watcher of every inbox counted on this replica: the
// leader of the WebSocket group that serves every unreadCount subscriber
// (gqlws.Options.SpanningFields). It hands out each inbox's new count with
// its version and, through the audience recorder, the user it is for (the
// user id, as the WebSocket layer scopes callers). A count not handed out
// yet is replaced by the inbox's next one: like any latest-value watcher,
// a slow reader skips intermediate counts but never ends with a stale one.
type unreadFeed struct {
	mu      *sync.Mutex // unreadCounts.mu
	pending map[int64]unreadValue
	order   []int64 // the users of pending, in the order their counts changed
	signal  chan struct{}
}

// unreadValue is a count and its version.
type unreadValue struct {
	n       int
	version int64
}

// set queues user's new count. Called with mu held.
func (f *unreadFeed) set(user int64, n int, version int64) {
	if _, queued := f.pending[user]; !queued {
		f.order = append(f.order, user)
	}
	f.pending[user] = unreadValue{n, version}
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// take returns the queued counts, in order, and empties the queue.
func (f *unreadFeed) take() ([]int64, map[int64]unreadValue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	order, pending := f.order, f.pending
	f.order, f.pending = nil, make(map[int64]unreadValue, len(pending))
	return order, pending
}

// watchAll returns the counts of every inbox counted here, starting with
// their current ones, until ctx ends. Each count is preceded by its
// audience (the user id) and its version, reported to ctx's recorders
// (stream.WithAudienceRecorder, live.WithVersionRecorder).
func (uc *unreadCounts) watchAll(ctx context.Context, audience func(string)) <-chan int {
	f := &unreadFeed{mu: &uc.mu, pending: make(map[int64]unreadValue), signal: make(chan struct{}, 1)}
	uc.mu.Lock()
	uc.feeds[f] = struct{}{}
	for id, in := range uc.inboxes {
		if in.known {
			f.set(id, in.n, in.version)
		}
	}
	uc.mu.Unlock()
	out := make(chan int)
	record := live.VersionRecorder(ctx)
	uc.panics.Go(ctx, "live.watcher", func() {
		defer close(out)
		defer func() {
			uc.mu.Lock()
			delete(uc.feeds, f)
			uc.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.signal:
			}
			for _, c := range byCount(f.take()) {
				for _, user := range c.users {
					audience(strconv.FormatInt(user, 10))
				}
				if record != nil {
					record(c.version)
				}
				select {
				case out <- c.n:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	return out
}

// sameCount is one count handed out once for every user who has it.
type sameCount struct {
	n       int
	version int64 // the newest of the users' versions
	users   []int64
}

// byCount groups the queued counts by value, in the order of their first
// user: a broadcast that moves every inbox to the same count is one result.
func byCount(order []int64, values map[int64]unreadValue) []sameCount {
	var out []sameCount
	at := make(map[int]int) // count -> index in out
	for _, user := range order {
		v := values[user]
		i, ok := at[v.n]
		if !ok {
			i = len(out)
			at[v.n] = i
			out = append(out, sameCount{n: v.n})
		}
		out[i].version = max(out[i].version, v.version)
		out[i].users = append(out[i].users, user)
	}
	return out
}
