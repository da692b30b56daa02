// Package notify sends notifications and serves each user's inbox live:
// notificationAdded (a durable stream with the after resume promise) and
// the unread count (a latest-value stream).
//
// Every notification is one event of a single durable stream; a user's
// inbox is the part addressed to them or to everyone
// (models.Notification.InInbox), and each subscription keeps only its own.
// Each replica keeps the unread counts of the inboxes watched through it
// (see unreadCounts): a new notification adds to them as it arrives on the
// stream, and a read in any tab is announced on the broker (payload: the
// user id) for every replica to count that inbox again.
package notify

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// unreadTopic is the broker topic of unread-count changes.
const unreadTopic = "notifications.unread"

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// Stream tunes the notification stream (its Log defaults to Log).
	Stream stream.Options
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives warnings.
	Log *slog.Logger
	// Panics recovers the panics of the service's goroutines: following the
	// broker (it subscribes again after a back-off and recounts for every
	// watcher), applying the stream and reading counts (each recounts every
	// watched inbox after a back-off) and the unread-count watchers (whose
	// stream ends); its Stream defaults to it. Nil logs them to
	// slog.Default.
	Panics *panics.Guard
}

// Service sends notifications and serves inboxes.
type Service struct {
	db     *store.DB
	feed   *stream.Feed[*models.Notification]
	broker pubsub.Broker
	now    func() time.Time
	log    *slog.Logger
	panics *panics.Guard

	unread *unreadCounts

	done chan struct{}
	stop context.CancelFunc // ends the subscription to the stream
	wg   sync.WaitGroup
}

// New returns a Service over the notification stream of db, announced on
// broker; Start runs its background work.
func New(db *store.DB, broker pubsub.Broker, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Stream.Log = cmp.Or(opts.Stream.Log, opts.Log)
	opts.Stream.Panics = cmp.Or(opts.Stream.Panics, opts.Panics)
	feed := stream.New(db.NotificationLog(), broker, func(n *models.Notification) int64 { return n.ID }, opts.Stream)
	return &Service{
		db: db, feed: feed, broker: broker, now: opts.Now, log: opts.Log, panics: opts.Panics, done: make(chan struct{}),
		unread: newUnreadCounts(db.UnreadNotificationCounts, opts.Log, opts.Panics),
	}
}

// Start follows the notification stream and unread-count announcements,
// and reads the counts they call for, until Close.
func (s *Service) Start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	// A broker down at start is not fatal: Follow keeps trying.
	sub, _ := s.broker.Subscribe(ctx, unreadTopic)
	// Subscribed before any watcher's first count, so that every
	// notification after that count is applied.
	notes, err := s.feed.Subscribe(ctx, models.NotificationStream, nil)
	if err != nil {
		s.log.WarnContext(ctx, "unread counts do not follow the notifications yet", "err", err)
	}
	s.wg.Add(3)
	go s.follow(ctx, sub)
	go func() {
		defer s.wg.Done()
		s.unread.run(ctx, s.done)
	}()
	go s.applyStream(ctx, notes)
}

// Close stops the background work and ends every subscription.
func (s *Service) Close() {
	close(s.done)
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	_ = s.feed.Close() // never fails
}

// applyStream hands every notification of c, a subscription to the
// stream, to the unread counts until ctx ends or the feed closes. c is nil
// when Start could not subscribe (the database was down): applyStream then
// tries again, and recounts every inbox once subscribed, since the
// notifications committed meanwhile were not applied.
func (s *Service) applyStream(ctx context.Context, c <-chan *models.Notification) {
	defer s.wg.Done()
	var backoff pubsub.Backoff
	for c == nil {
		if !backoff.Wait(ctx) {
			return
		}
		var err error
		if c, err = s.feed.Subscribe(ctx, models.NotificationStream, nil); err != nil {
			if errors.Is(err, stream.ErrClosed) {
				return
			}
			s.log.WarnContext(ctx, "unread counts do not follow the notifications yet", "err", err)
			continue
		}
		s.unread.recountAll()
	}
	for n := range c { // ends only with ctx or the feed
		if s.panics.Do(ctx, whereApply, func() { s.unread.apply(n) }) {
			// n may be half applied: count every inbox again.
			if !s.unread.backoff(ctx, s.done) {
				return
			}
			s.unread.recountAll()
		}
	}
}

// whereApply names the panics of applying a notification to the unread
// counts.
const whereApply = "notify.apply"

// Send validates, stores and delivers a notification: to user in.UserID, or
// to everyone when it is nil.
//
// key ("": none) is sender's idempotency key (checked by
// models.IdempotencyKey): a Send with a key sender already used for a
// notification within models.IdempotencyWindow returns that notification
// and stores and delivers nothing, on every replica; the same key with
// another input is models.BadUserInput. sender may be nil only without a
// key.
func (s *Service) Send(ctx context.Context, sender *models.User, in *models.NotificationInput, key string) (*models.Notification, error) {
	n, err := models.ValidNotification(in)
	if err != nil {
		return nil, err
	}
	to := "*"
	if in.UserID != nil {
		id, err := strconv.ParseInt(*in.UserID, 10, 64)
		if err != nil || id <= 0 {
			return nil, models.Errorf(models.NotFound, "user %q not found", *in.UserID)
		}
		n.RecipientID = &id
		to = *in.UserID
	}
	once, err := models.NewIdempotency(sender, models.OpSendNotification, key, []any{n.RecipientID, n.Title, n.Body, n.Level, n.Link})
	if err != nil {
		return nil, err
	}
	var first models.Notification
	if replayed, err := s.db.Replay(ctx, once, s.now(), &first); err != nil {
		return nil, err
	} else if replayed {
		return &first, nil
	}
	if n.RecipientID != nil {
		if _, err := s.db.User(ctx, *n.RecipientID); err != nil {
			return nil, err
		}
	}
	if replayed, err := s.db.CreateNotification(ctx, n, s.now(), once); err != nil {
		return nil, err
	} else if replayed {
		return n, nil
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.feed.Publish(ctx, models.NotificationStream, n); err != nil {
		// Committed already: subscribers get it from the database instead,
		// and this replica's unread counts at once.
		s.log.Log(ctx, pubsub.AnnouncementLevel(err), "notification not announced", "id", n.ID, "err", err)
		s.recount(to)
	}
	return n, nil
}

// Subscribe returns the notifications of u's inbox (see
// stream.Feed.Subscribe for after). A replay reads u's inbox only, through
// its index, not everyone's notifications.
func (s *Service) Subscribe(ctx context.Context, u *models.User, after *int64) (<-chan *models.Notification, error) {
	log := s.db.NotificationLog()
	return s.feed.SubscribePart(ctx, models.NotificationStream, after, stream.Part[*models.Notification]{
		Keep: func(n *models.Notification) bool { return n.InInbox(u) },
		After: func(ctx context.Context, after int64, limit int) ([]*models.Notification, int64, error) {
			return log.InboxAfter(ctx, u, after, limit)
		},
		Audience: Audience,
	})
}

// Audience names the inbox a notification is for, as the WebSocket layer
// scopes callers (the user id), or "" for a broadcast: under
// stream.WithAudienceRecorder, one subscription serves every inbox (see
// gqlws.Options.SpanningFields). A broadcast then goes to every inbox
// watched live, even that of a user who signed up more than a second after
// the broadcast was created but before it committed, whose inbox (InInbox)
// leaves it out.
func Audience(n *models.Notification) string {
	if n.RecipientID == nil {
		return ""
	}
	return strconv.FormatInt(*n.RecipientID, 10)
}

// Inbox returns up to limit notifications of u's inbox with an ID below
// before (any when 0), newest first, each with whether u has read it; only
// unread ones with unreadOnly.
func (s *Service) Inbox(ctx context.Context, u *models.User, unreadOnly bool, before int64, limit int) ([]*models.Notification, error) {
	return s.db.Notifications(ctx, u, unreadOnly, before, limit)
}

// Unread counts the unread notifications of u's inbox.
func (s *Service) Unread(ctx context.Context, u *models.User) (int, error) {
	return s.db.UnreadNotifications(ctx, u)
}

// MarkRead marks one notification of u's inbox read.
func (s *Service) MarkRead(ctx context.Context, u *models.User, id int64) (*models.Notification, error) {
	n, err := s.db.MarkNotificationRead(ctx, u, id)
	if err != nil {
		return nil, err
	}
	s.announce(context.WithoutCancel(ctx), u)
	return n, nil
}

// MarkAllRead marks u's whole inbox read and reports how many were unread.
func (s *Service) MarkAllRead(ctx context.Context, u *models.User) (int, error) {
	n, err := s.db.MarkAllNotificationsRead(ctx, u)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.announce(context.WithoutCancel(ctx), u)
	}
	return n, nil
}

// announce tells every replica that u's unread count changed; when the
// broker fails, at least this replica's watchers are told.
func (s *Service) announce(ctx context.Context, u *models.User) {
	to := strconv.FormatInt(u.ID, 10)
	if err := s.broker.Publish(ctx, unreadTopic, []byte(to)); err != nil {
		s.log.Log(ctx, pubsub.AnnouncementLevel(err), "unread count change not announced", "to", to, "err", err)
		s.recount(to)
	}
}

// WatchUnread returns u's unread count: the current one at once, then the
// new one after every change, until ctx ends; u's inbox is counted until
// life ends too (the subscriber's lifetime, which a shared delivery may
// extend beyond ctx: see gqlws.SubscriberContext). Under
// stream.WithAudienceRecorder it returns the counts of every inbox counted
// here instead, each reported with its user (see unreadFeed).
func (s *Service) WatchUnread(ctx, life context.Context, u *models.User) (<-chan int, error) {
	if audience := stream.AudienceRecorder(ctx); audience != nil {
		return s.unread.watchAll(ctx, audience), nil
	}
	return s.unread.watch(ctx, life, u)
}

// follow recounts for the watchers of each announced user, and for all
// after the broker dropped the subscription.
func (s *Service) follow(ctx context.Context, sub *pubsub.Subscription) {
	defer s.wg.Done()
	pubsub.Follower{
		Broker: s.broker, Topic: unreadTopic,
		Apply:  func(payload []byte) { s.recount(string(payload)) },
		Missed: s.unread.recountAll,
		Panics: s.panics, Where: "notify.follower",
	}.Run(ctx, sub, s.done)
}

// recount counts again the unread notifications of user to ("*": every
// watched inbox; replicas of earlier versions announce broadcasts so).
func (s *Service) recount(to string) {
	if to == "*" {
		s.unread.recountAll()
		return
	}
	if id, err := strconv.ParseInt(to, 10, 64); err == nil {
		s.unread.recount(id)
	}
}
