// Package statuses is the public status feed: posting a status (rate
// limit, validation, storing, then announcing), the pages of the feed, and
// statusPosted, a durable stream with the after resume promise (see the
// delivery promise in README.md).
//
// A status is committed first and announced on the broker second: the
// database is the truth, and an announcement that fails only delays
// delivery to the stream's next poll.
package statuses

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// RateLimit limits how fast one user posts; nil: no limit.
	RateLimit *ratelimit.Keyed
	// Stream tunes the status stream (its Log defaults to Log).
	Stream stream.Options
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives warnings.
	Log *slog.Logger
}

// Service posts statuses and serves the feed.
type Service struct {
	db   *store.DB
	feed *stream.Feed[*models.Status]
	opts Options
}

// New returns a Service over the status stream of db, announced on broker.
// Close ends its subscriptions.
func New(db *store.DB, broker pubsub.Broker, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Stream.Log = cmp.Or(opts.Stream.Log, opts.Log)
	feed := stream.New(db.StatusLog(), broker, func(st *models.Status) int64 { return st.ID }, opts.Stream)
	return &Service{db: db, feed: feed, opts: opts}
}

// Close ends every subscription and waits for the stream's background work.
func (s *Service) Close() {
	_ = s.feed.Close() // never fails
}

// Post posts text (trimmed, see models.StatusText) as author and announces
// it to every subscriber. Invalid text is models.BadUserInput and a
// refusal of the rate limit models.RateLimited; neither stores anything.
// Once the status is committed, Post succeeds: a broker that fails to
// announce it only delays delivery (subscribers find it in the database).
//
// key ("": none) is author's idempotency key (checked by
// models.IdempotencyKey): a Post with a key author already used for a
// status within models.IdempotencyWindow returns that status, stores and
// announces nothing and is not rate limited, on every replica; the same
// key with another text is models.BadUserInput.
func (s *Service) Post(ctx context.Context, author *models.User, text, key string) (*models.Status, error) {
	text, err := models.StatusText(text)
	if err != nil {
		return nil, err
	}
	once, err := models.NewIdempotency(author, models.OpPostStatus, key, text)
	if err != nil {
		return nil, err
	}
	var first *models.Status
	if replayed, err := s.db.Replay(ctx, once, s.opts.Now(), &first); replayed || err != nil {
		return first, err
	}
	if !s.opts.RateLimit.Allow(ctx, author.ID) {
		return nil, models.Errorf(models.RateLimited, "too many statuses; slow down")
	}
	st, replayed, err := s.db.CreateStatus(ctx, author, text, s.opts.Now(), once)
	if err != nil || replayed {
		return st, err
	}
	if err := s.feed.Publish(context.WithoutCancel(ctx), models.StatusStream, st); err != nil {
		// Committed already: subscribers get it from the database instead.
		s.opts.Log.Log(ctx, pubsub.AnnouncementLevel(err), "status not announced", "id", st.ID, "err", err)
	}
	return st, nil
}

// Before returns up to limit statuses with an ID below before (any when
// before is 0), newest first, with their authors: a page of the feed.
func (s *Service) Before(ctx context.Context, before int64, limit int) ([]*models.Status, error) {
	return s.db.StatusesBefore(ctx, before, limit)
}

// Subscribe returns the statuses posted after after (from now on when nil),
// in order, each exactly once, until ctx ends or the service closes (see
// stream.Feed.Subscribe; an after beyond the newest status is
// models.BadUserInput).
func (s *Service) Subscribe(ctx context.Context, after *int64) (<-chan *models.Status, error) {
	return s.feed.Subscribe(ctx, models.StatusStream, after)
}
