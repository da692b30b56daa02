package notify

import (
	"context"

	"github.com/switchboardhq/switchboard/live"
)

// unreadFeed is one watcher of every inbox counted on this replica: the
// leader of the WebSocket group that serves every unreadCount subscriber
// (gqlws.Options.SpanningFields). It hands out each inbox's new count with
// its version and, through the audience recorder, the user it is for (the
// user id, as the WebSocket layer scopes callers). A count not handed out
// yet is replaced by the inbox's next one: like any latest-value watcher,
// a slow reader skips intermediate counts but never ends with a stale one.
type unreadFeed = live.Pending[int64, unreadValue]

// unreadValue is a count, its version and the scope of its user.
type unreadValue struct {
	n       int
	version int64
	scope   string
}

// setFeed queues the new count of inbox in on f.
func setFeed(f *unreadFeed, in *unreadInbox, n int, version int64) {
	f.Update(in.user.ID, func(unreadValue, bool) unreadValue { return unreadValue{n, version, in.scope} })
}

// watchAll returns the counts of every inbox counted here, starting with
// their current ones, until ctx ends. Each count is preceded by its
// audience (the user id) and its version, reported to ctx's recorders
// (stream.WithAudienceRecorder, live.WithVersionRecorder).
func (uc *unreadCounts) watchAll(ctx context.Context, audience func(string)) <-chan int {
	f := live.NewPending[int64, unreadValue]()
	uc.mu.Lock()
	uc.feeds[f] = struct{}{}
	for _, in := range uc.inboxes {
		if in.known {
			setFeed(f, in, in.n, in.version)
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
			case <-f.C():
			}
			// Under mu, which apply holds for a whole notification: a
			// broadcast's counts come in one take, not in pieces.
			uc.mu.Lock()
			order, values := f.Take()
			uc.mu.Unlock()
			// Every user of one count gets it from one result: a broadcast
			// that moves every inbox to the same count is one, its version
			// the newest of theirs.
			for _, users := range live.GroupBy(order, func(u int64) (int, bool) { return values[u].n, true }) {
				var version int64
				for _, user := range users {
					audience(values[user].scope)
					version = max(version, values[user].version)
				}
				if record != nil {
					record(version)
				}
				select {
				case out <- values[users[0]].n:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	return out
}
