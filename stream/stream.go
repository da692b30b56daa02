// Package stream delivers durable streams live and resumably: the status
// feed, each chat room's messages, and the notifications (of which each
// subscriber keeps its own inbox's).
//
// A durable stream is a sequence of events numbered 1, 2, 3… in commit order
// by the store (see package store). Its events are committed to the database
// first and announced on the broker second, so the database is the truth and
// the broker only the fast path. A Feed joins the two:
//
//   - One hub per stream and process subscribes to the stream's broker topic
//     once, decodes each event once, and hands it to every local subscriber.
//     It emits events strictly in order: an event that arrives ahead of a
//     missing one (concurrent writers publish out of order; a broker may drop
//     messages) makes the hub read the missing ones from the database first.
//     It also polls the stream's head at a fixed interval, which catches
//     events whose announcement never came (another process without a shared
//     broker, a broker outage).
//   - Each subscription attaches to its hub, then replays from the database
//     everything after the client's cursor, then continues with the hub's
//     events, skipping what it already sent. The result is every event after
//     the cursor, in order, exactly once.
//   - A subscriber that does not keep up never slows the hub: its bounded
//     buffer overflows, the hub detaches it, and it re-reads what it missed
//     from the database before re-joining live delivery.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
)

// ErrClosed is returned by a Feed that has been closed.
var ErrClosed = errors.New("stream: feed closed")

// Source reads the committed events of durable streams.
type Source[T any] interface {
	// Head returns the position of the newest committed event of the stream;
	// every event up to it is readable. It is 0 for an empty stream.
	Head(ctx context.Context, stream string) (int64, error)
	// After returns up to limit committed events positioned after after,
	// in ascending order.
	After(ctx context.Context, stream string, after int64, limit int) ([]T, error)
}

// Broker is the part of pubsub.Broker a Feed uses.
type Broker interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	Subscribe(ctx context.Context, topic string) (*pubsub.Subscription, error)
}

// Options tune a Feed. Zero values take the defaults.
type Options struct {
	// PollInterval is how often a hub checks the database for events no
	// broker announced. Default 1s.
	PollInterval time.Duration
	// Buffer is how many events a subscription may fall behind live delivery
	// before it is detached to catch up from the database. Default 256.
	Buffer int
	// PageSize is how many events one database read returns. Default 500.
	PageSize int
	// Recent is how many of a stream's latest events its hub keeps in
	// memory, for subscribers that resume among them to replay without a
	// database read (see hub.recentAfter). Default 128; negative: none.
	Recent int
	// Log receives warnings about database and broker failures.
	Log *slog.Logger
	// Panics recovers the panics of the feed's goroutines: a hub's that
	// follows the broker (it subscribes again after a back-off and catches
	// up from the database) and a subscription's (its channel closes). Nil
	// logs them to slog.Default.
	Panics *panics.Guard
}

// Feed delivers the streams of one kind of event T, positioned by pos.
type Feed[T any] struct {
	src    Source[T]
	broker Broker
	pos    func(T) int64
	opts   Options

	mu     sync.Mutex
	closed bool
	hubs   map[string]*hub[T]
	wg     sync.WaitGroup
}

// New returns a Feed reading committed events from src, announced on broker
// under topics named like their streams; pos tells an event's position.
func New[T any](src Source[T], broker Broker, pos func(T) int64, opts Options) *Feed[T] {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	switch {
	case opts.Recent == 0:
		opts.Recent = 128
	case opts.Recent < 0:
		opts.Recent = 0
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Feed[T]{src: src, broker: broker, pos: pos, opts: opts, hubs: make(map[string]*hub[T])}
}

// Publish announces ev, already committed to stream, to the subscribers of
// every process sharing the broker. An announcement that fails loses
// nothing: hubs find the event in the database at their next poll.
func (f *Feed[T]) Publish(ctx context.Context, stream string, ev T) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", stream, err)
	}
	if err := f.broker.Publish(ctx, stream, payload); err != nil {
		return fmt.Errorf("publish %s event %d: %w", stream, f.pos(ev), err)
	}
	return nil
}

// Subscribe returns the events of stream in order. With after nil it starts
// with the events committed from now on; otherwise it first replays every
// event positioned after *after. The channel is closed when ctx ends or the
// feed closes. An after below 0 or beyond the stream's head is a
// models.BadUserInput error.
func (f *Feed[T]) Subscribe(ctx context.Context, stream string, after *int64) (<-chan T, error) {
	return f.SubscribePart(ctx, stream, after, Part[T]{})
}

// A Part is one reader's share of a stream, such as a user's notifications
// among everyone's.
type Part[T any] struct {
	// Keep reports whether a live event belongs to the part (nil: all do).
	// It runs on the subscription's goroutine and must not block.
	Keep func(T) bool
	// After, if not nil, reads the part from the database for replays
	// instead of the whole stream: up to limit events of the part positioned
	// after after, in ascending order, and the position through which the
	// part has been read completely (at least the last event returned).
	After func(ctx context.Context, after int64, limit int) (evs []T, through int64, err error)
	// Audience, if not nil, names the reader an event is for ("" for every
	// reader). A subscription whose context carries an audience recorder
	// (WithAudienceRecorder) then reads the whole stream, not the part, and
	// reports each event's audience just before its position: it serves
	// the readers of every part at once.
	Audience func(T) string
}

// SubscribePart is Subscribe for one reader's part of a shared stream: the
// events part.Keep accepts, replayed through part.After when it is set.
func (f *Feed[T]) SubscribePart(ctx context.Context, stream string, after *int64, part Part[T]) (<-chan T, error) {
	if start, ok := ctx.Value(startKey{}).(int64); ok && after == nil {
		after = &start // see WithStart
	}
	if resume, ok := ctx.Value(resumeKey{}).(int64); ok {
		after = &resume // see WithResume
	}
	h, err := f.acquire(ctx, stream)
	if err != nil {
		return nil, err
	}
	m, last, ok := h.attach(f.opts.Buffer)
	if !ok {
		f.release(h)
		return nil, ErrClosed
	}
	replay := false
	if after != nil {
		if err := f.checkCursor(ctx, stream, *after, last); err != nil {
			h.detach(m)
			f.release(h)
			return nil, err
		}
		last, replay = *after, true
	}
	out := make(chan T)
	rec, _ := ctx.Value(recorderKey{}).(*recorder)
	at, _ := ctx.Value(timeRecorderKey{}).(func(time.Time))
	aud := AudienceRecorder(ctx)
	if aud != nil && part.Audience != nil {
		part = Part[T]{Audience: part.Audience} // every part's events
	} else {
		aud = nil
	}
	if rec != nil && !replay {
		// Nothing to replay: it is caught up already, and says so before
		// it is returned (see WithPositionRecorder).
		rec.caughtUp(last)
	}
	f.opts.Panics.Go(ctx, whereSubscription, func() { f.serve(ctx, h, m, last, replay, outlet[T]{c: out, rec: rec, part: part, at: at, aud: aud}) })
	return out, nil
}

// checkCursor refuses a cursor that cannot have come from this stream.
func (f *Feed[T]) checkCursor(ctx context.Context, stream string, after, hubHead int64) error {
	if after < 0 {
		return models.Errorf(models.BadUserInput, "after must not be negative")
	}
	if after <= hubHead {
		return nil
	}
	head, err := f.src.Head(ctx, stream)
	if err != nil {
		return err
	}
	if after > head {
		return models.Errorf(models.BadUserInput, "after %d is beyond the newest event (%d)", after, head)
	}
	return nil
}

// whereSubscription names the panics of a subscription's goroutine (serve):
// its channel closes.
const whereSubscription = "stream.subscription"

// serve feeds one subscription until ctx ends or the feed closes.
func (f *Feed[T]) serve(ctx context.Context, h *hub[T], m *member[T], last int64, replay bool, out outlet[T]) {
	defer close(out.c)
	defer f.release(h)
	defer func() { h.detach(m) }()
	f.opts.Panics.Point(whereSubscription)
	for {
		if replay && !f.catchUp(ctx, h, &last, -1, out) {
			return
		}
		if !f.follow(ctx, h, m, &last, out) {
			return
		}
		// The hub detached us for falling behind: join again, then re-read
		// from the database what was skipped.
		var ok bool
		if m, _, ok = h.attach(f.opts.Buffer); !ok {
			return
		}
		replay = true
	}
}

// follow relays the hub's events after *last until the member is detached
// (true) or ctx ends (false).
func (f *Feed[T]) follow(ctx context.Context, h *hub[T], m *member[T], last *int64, out outlet[T]) bool {
	if out.rec != nil {
		out.rec.caughtUp(*last)
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-m.c:
			if !ok {
				return ctx.Err() == nil
			}
			p := f.pos(ev)
			if p <= *last {
				continue
			}
			if p > *last+1 && !f.catchUp(ctx, h, last, p-1, out) {
				return false
			}
			if !f.send(ctx, out, ev) {
				return false
			}
			*last = p
		}
	}
}

// catchUp sends the committed events after *last, up to upTo (or to the end
// when upTo < 0), retrying database failures until ctx ends. It returns false
// when ctx ended.
func (f *Feed[T]) catchUp(ctx context.Context, h *hub[T], last *int64, upTo int64, out outlet[T]) bool {
	var backoff pubsub.Backoff
	for upTo < 0 || *last < upTo {
		evs, through, more, err := f.page(ctx, h, *last, out.part)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			f.opts.Log.WarnContext(ctx, "stream replay failed, retrying", "stream", h.name, "after", *last, "err", err)
			if !backoff.Wait(ctx) {
				return false
			}
			continue
		}
		backoff.Reset()
		for _, ev := range evs {
			p := f.pos(ev)
			if upTo >= 0 && p > upTo {
				return true
			}
			if !f.send(ctx, out, ev) {
				return false
			}
			*last = p
		}
		// A part is read through positions none of its events hold.
		if upTo >= 0 {
			through = min(through, upTo)
		}
		*last = max(*last, through)
		if !more {
			return true
		}
	}
	return true
}

// page returns the events after after: those the hub holds in memory, or
// else a page from the database (of the part when it has its own reader,
// else of the whole stream, through the hub: see hub.read); how far it has
// read; and whether more may follow in the database.
func (f *Feed[T]) page(ctx context.Context, h *hub[T], after int64, part Part[T]) (evs []T, through int64, more bool, err error) {
	if evs, ok := h.recentAfter(after); ok {
		through = after
		if len(evs) > 0 {
			through = f.pos(evs[len(evs)-1])
		}
		return evs, through, false, nil // what follows comes from the hub
	}
	if part.After != nil {
		evs, through, err = part.After(ctx, after, f.opts.PageSize)
		return evs, through, len(evs) == f.opts.PageSize, err
	}
	evs, err = h.read(ctx, after)
	if err != nil || len(evs) == 0 {
		return evs, after, false, err
	}
	return evs, f.pos(evs[len(evs)-1]), len(evs) == f.opts.PageSize, nil
}

// outlet is where a subscription's events go: the channel its reader
// receives from, and the position recorder found in its context when it
// started (looked up once, not per event).
type outlet[T any] struct {
	c    chan<- T
	rec  *recorder
	part Part[T]
	at   func(time.Time) // event time recorder, if any
	aud  func(string)    // audience recorder, if the subscription serves every part
}

// send hands ev to the subscription's reader unless ctx has ended: once a
// client stops an operation, nothing committed after that reaches it. The
// position recorder, if any, learns ev's position first.
func (f *Feed[T]) send(ctx context.Context, out outlet[T], ev T) bool {
	if ctx.Err() != nil {
		return false
	}
	if out.part.Keep != nil && !out.part.Keep(ev) {
		return true // not this reader's: passed over, as if sent
	}
	if out.at != nil {
		if e, ok := any(ev).(interface{ EventTime() time.Time }); ok {
			out.at(e.EventTime())
		}
	}
	if out.aud != nil {
		out.aud(out.part.Audience(ev))
	}
	if out.rec != nil {
		out.rec.sent(f.pos(ev))
	}
	select {
	case out.c <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

type recorderKey struct{}

type recorder struct{ sent, caughtUp func(pos int64) }

// WithPositionRecorder returns ctx under which a subscription reports where
// it stands: sent(pos) just before it hands over the event at pos, in order,
// and caughtUp(pos) when it has handed over every event up to pos and waits
// for new ones; a subscription without a cursor reports caughtUp before
// Subscribe returns it. A reader that turns each event into exactly one result (as a
// GraphQL subscription does) thus learns the position of each result; the
// WebSocket layer uses it to share live delivery between subscribers that
// resumed from different positions.
func WithPositionRecorder(ctx context.Context, sent, caughtUp func(pos int64)) context.Context {
	return context.WithValue(ctx, recorderKey{}, &recorder{sent: sent, caughtUp: caughtUp})
}

type timeRecorderKey struct{}

// WithEventTimeRecorder returns ctx under which a subscription reports when
// each event it hands over happened, for events with an EventTime method:
// record(at) just before the position recorder's sent(pos) for the event.
func WithEventTimeRecorder(ctx context.Context, record func(at time.Time)) context.Context {
	return context.WithValue(ctx, timeRecorderKey{}, record)
}

type audienceRecorderKey struct{}

// WithAudienceRecorder returns ctx under which a subscription to a stream
// whose parts name their audience (Part.Audience) reads every part and
// reports each event's audience: record(audience) just before the position
// recorder's sent(pos) for the event.
func WithAudienceRecorder(ctx context.Context, record func(audience string)) context.Context {
	return context.WithValue(ctx, audienceRecorderKey{}, record)
}

type startKey struct{}

// WithStart returns ctx under which a subscription without a cursor starts
// after pos, as if it had asked for after pos: a shared delivery's leader
// that starts for a subscriber which joined at pos gets what was committed
// since, which a subscription from the head would miss.
func WithStart(ctx context.Context, pos int64) context.Context {
	return context.WithValue(ctx, startKey{}, pos)
}

type resumeKey struct{}

// WithResume returns ctx under which a subscription starts after pos
// whatever cursor it was given: a client that reconnects saying where it
// stopped (an EventSource's Last-Event-ID) resumes from there, though the
// request it repeats carries the cursor of its first connection.
func WithResume(ctx context.Context, pos int64) context.Context {
	return context.WithValue(ctx, resumeKey{}, pos)
}

// PositionRecorder returns the position recorder of ctx
// (WithPositionRecorder), or nils, for a stream that does not run on a
// Feed.
func PositionRecorder(ctx context.Context) (sent, caughtUp func(pos int64)) {
	if rec, ok := ctx.Value(recorderKey{}).(*recorder); ok {
		return rec.sent, rec.caughtUp
	}
	return nil, nil
}

// AudienceRecorder returns the audience recorder of ctx
// (WithAudienceRecorder), or nil.
func AudienceRecorder(ctx context.Context) func(audience string) {
	record, _ := ctx.Value(audienceRecorderKey{}).(func(string))
	return record
}

// acquire returns the running hub of stream, starting it if needed, and
// counts a reference to it.
func (f *Feed[T]) acquire(ctx context.Context, stream string) (*hub[T], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if h := f.hubs[stream]; h != nil {
		h.refs++
		return h, nil
	}
	h, err := f.startHub(ctx, stream)
	if err != nil {
		return nil, err
	}
	h.refs = 1
	f.hubs[stream] = h
	return h, nil
}

// release drops a reference to h; the last one stops it.
func (f *Feed[T]) release(h *hub[T]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h.refs--
	if h.refs == 0 {
		if f.hubs[h.name] == h {
			delete(f.hubs, h.name)
		}
		h.cancel()
	}
}

// Close stops every hub and ends every subscription, then waits for the hubs
// to finish.
func (f *Feed[T]) Close() error {
	f.mu.Lock()
	f.closed = true
	for _, h := range f.hubs {
		h.cancel()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}
