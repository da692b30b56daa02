package notify

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// recentSize is how many of the last notifications applied unreadCounts
// keeps, to bring a count read from the database up to date with the
// notifications applied while the read ran.
const recentSize = 4096

// unreadCounts keeps the unread counts of the inboxes watched through this
// replica, and only those.
//
// A new notification is an increment: the replica follows the notification
// stream (in order, no gap, no duplicate) and adds each notification to
// the count of every watched inbox it belongs to, without a statement. A
// count is read from the database only when an inbox gets its first
// watcher and after a read in any tab (announced by user id), for all
// inboxes when announcements may have been lost: in one statement per 200
// inboxes, queued and merged by one goroutine. Each read is exact at a
// position of the stream (store.UnreadCount.Head); the notifications
// applied beyond it are added from the recent ones, and those up to it are
// not added again. A read of a notification commits after the notification
// (so after any count that missed the notification) and is announced after
// its commit, so the count that follows the announcement sees both: the
// last value every watcher gets is right.
type unreadCounts struct {
	count  func(ctx context.Context, users []*models.User) ([]store.UnreadCount, error)
	log    *slog.Logger
	panics *panics.Guard
	wake   chan struct{} // holds a token while recounts are pending
	pause  panics.Backoff

	mu         sync.Mutex
	version    int64                               // of the last count set, over every inbox
	inboxes    map[int64]*unreadInbox              // by user ID
	feeds      map[*unreadFeed]struct{}            // the watchers of every inbox (watchAll)
	recent     *stream.Recent[models.Notification] // the last ones applied: what InInbox reads
	pending    map[int64]struct{}                  // inboxes to count again
	pendingAll bool                                // count every inbox again
}

// unreadInbox is one watched inbox.
type unreadInbox struct {
	user     *models.User
	scope    string // the user's id, as the WebSocket layer scopes its events (formatted once, not per broadcast)
	known    bool   // n is its count (false until the first read returns)
	n        int    // unread notifications up to pos
	pos      int64  // position of the stream n is exact at
	version  int64  // of n: unreadCounts.version when n was set
	ready    chan struct{}
	err      error // why the first read failed, once ready is closed
	watchers map[*live.Latest[int]]struct{}
	holds    int // subscriptions that keep the inbox counted without a watcher of their own (see watch)
}

func newUnreadCounts(count func(context.Context, []*models.User) ([]store.UnreadCount, error), log *slog.Logger, guard *panics.Guard) *unreadCounts {
	return &unreadCounts{
		count: count, log: log, panics: guard, wake: make(chan struct{}, 1),
		inboxes: make(map[int64]*unreadInbox), pending: make(map[int64]struct{}), feeds: make(map[*unreadFeed]struct{}),
		recent: stream.NewRecent(recentSize, func(n models.Notification) int64 { return n.ID }),
	}
}

// watch returns u's unread count: the current one at once (read from the
// database when u has no other watcher here), then each new one, until ctx
// ends. The channel's values are delivered by a goroutine of the watcher's
// own, which ends with ctx. Each value carries its version (see
// live.WithVersionRecorder): versions grow over every inbox. The inbox stays
// counted until life ends too: a subscription whose values come from a
// watcher of every inbox (watchAll) once it stops its own keeps it so.
func (uc *unreadCounts) watch(ctx, life context.Context, u *models.User) (<-chan int, error) {
	w := live.NewLatest[int]()
	uc.mu.Lock()
	in := uc.inboxes[u.ID]
	if in == nil {
		in = &unreadInbox{user: u, scope: strconv.FormatInt(u.ID, 10), ready: make(chan struct{}), watchers: make(map[*live.Latest[int]]struct{})}
		uc.inboxes[u.ID] = in
		uc.pending[u.ID] = struct{}{}
		uc.signal()
	}
	in.watchers[w] = struct{}{}
	if in.known {
		w.SetVersion(in.n, in.version)
	}
	in.holds++
	uc.mu.Unlock()
	live.OnEnd(life, func() { uc.drop(in, func() { in.holds-- }) })
	forget := func() { uc.drop(in, func() { delete(in.watchers, w) }) }
	select {
	case <-in.ready:
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
	if in.err != nil {
		forget()
		return nil, in.err
	}
	go w.RunGuarded(ctx, forget, uc.panics, "live.watcher")
	return w.C(), nil
}

// drop runs release, which lets go of one of in's watchers or holds, and
// stops counting in when it was the last.
func (uc *unreadCounts) drop(in *unreadInbox, release func()) {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	release()
	if len(in.watchers) == 0 && in.holds == 0 && uc.inboxes[in.user.ID] == in {
		delete(uc.inboxes, in.user.ID)
	}
}

// apply adds notification n, the next of the stream, to the counts of the
// watched inboxes it belongs to, and sends them their new count.
func (uc *unreadCounts) apply(n *models.Notification) {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if !uc.recent.Apply(models.Notification{ID: n.ID, RecipientID: n.RecipientID, CreatedAt: n.CreatedAt}) {
		return
	}
	uc.version++ // one for every count n changes: the watchers of every inbox share them
	if !n.Broadcast() {
		if in := uc.inboxes[*n.RecipientID]; in != nil {
			uc.add(in, n)
		}
		return
	}
	for _, in := range uc.inboxes {
		uc.add(in, n)
	}
}

// add counts n in inbox in if it belongs there and is not counted yet.
// Called with mu held.
func (uc *unreadCounts) add(in *unreadInbox, n *models.Notification) {
	if !in.known || n.ID <= in.pos || !n.InInbox(in.user) {
		return
	}
	uc.set(in, in.n+1, n.ID)
}

// set makes n, exact at pos, the count of inbox in, and sends it to its
// watchers and to the watchers of every inbox when it changed, with the
// current version (which the caller has advanced). Called with mu held.
func (uc *unreadCounts) set(in *unreadInbox, n int, pos int64) {
	changed := !in.known || in.n != n
	first := !in.known
	in.known, in.n, in.pos = true, n, pos
	if changed {
		in.version = uc.version
		for w := range in.watchers {
			w.SetVersion(n, in.version)
		}
		for f := range uc.feeds {
			setFeed(f, in, n, in.version)
		}
	}
	if first {
		close(in.ready)
	}
}

// recount queues a read of userID's count, if watched here.
func (uc *unreadCounts) recount(userID int64) {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if uc.inboxes[userID] != nil {
		uc.pending[userID] = struct{}{}
		uc.signal()
	}
}

// recountAll queues a read of every watched inbox's count.
func (uc *unreadCounts) recountAll() {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	uc.pendingAll = true
	uc.signal()
}

// signal wakes run. Called with mu held.
func (uc *unreadCounts) signal() {
	select {
	case uc.wake <- struct{}{}:
	default:
	}
}

// run reads the queued counts until ctx ends or done is closed, backing off
// while the database fails.
func (uc *unreadCounts) run(ctx context.Context, done <-chan struct{}) {
	var backoff pubsub.Backoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-uc.wake:
		}
		var err error
		if uc.panics.Do(ctx, whereRead, func() { err = uc.readPending(ctx) }) {
			// What was queued may be lost: count every inbox again.
			if !uc.backoff(ctx, done) {
				return
			}
			uc.recountAll()
			continue
		}
		if err != nil {
			uc.log.WarnContext(ctx, "unread count failed, retrying", "err", err)
			if !backoff.Wait(ctx) {
				return
			}
			continue
		}
		backoff.Reset()
	}
}

// whereRead names the panics of reading counts.
const whereRead = "notify.unread"

// backoff waits before going on after a panic (see panics.Backoff), and
// reports false if ctx ended or done closed meanwhile.
func (uc *unreadCounts) backoff(ctx context.Context, done <-chan struct{}) bool {
	uc.mu.Lock()
	d := uc.pause.Next(time.Now())
	uc.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-done:
	}
	return false
}

// readPending reads the counts of the queued inboxes and applies them. When
// the read fails, first watchers get the error and the others stay queued.
func (uc *unreadCounts) readPending(ctx context.Context) error {
	users := uc.takePending()
	if len(users) == 0 {
		return nil
	}
	counts, err := uc.count(ctx, users)
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if err != nil {
		uc.failed(users, err)
		return err
	}
	for _, c := range counts {
		if in := uc.inboxes[c.UserID]; in != nil {
			uc.counted(in, c)
		}
	}
	return nil
}

// takePending empties the queue and returns the users of the queued
// inboxes.
func (uc *unreadCounts) takePending() []*models.User {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	var users []*models.User
	for id, in := range uc.inboxes {
		if _, ok := uc.pending[id]; ok || uc.pendingAll {
			users = append(users, in.user)
		}
	}
	clear(uc.pending)
	uc.pendingAll = false
	return users
}

// failed hands err to the first watchers of users' inboxes and queues the
// others again. Called with mu held.
func (uc *unreadCounts) failed(users []*models.User, err error) {
	for _, u := range users {
		in := uc.inboxes[u.ID]
		switch {
		case in == nil:
		case in.known:
			uc.pending[u.ID] = struct{}{}
			uc.signal()
		default:
			in.err = err
			close(in.ready)
			delete(uc.inboxes, u.ID)
		}
	}
}

// counted applies a count read from the database, brought up to date with
// the notifications applied since the position it is exact at. Called with
// mu held.
func (uc *unreadCounts) counted(in *unreadInbox, c store.UnreadCount) {
	since, at, ok := uc.recent.After(c.Head)
	if !ok {
		// Too long ago to bring up to date: read again.
		uc.pending[c.UserID] = struct{}{}
		uc.signal()
		return
	}
	n := c.Unread
	for _, ev := range since {
		if ev.InInbox(in.user) {
			n++
		}
	}
	uc.version++
	uc.set(in, n, at)
}
