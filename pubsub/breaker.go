package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/panics"
)

var (
	// ErrBrokerDown is what a Breaker answers at once, without trying, while
	// its circuit is open: the broker failed or timed out recently, and no
	// probe has found it answering since.
	ErrBrokerDown = errors.New("pubsub: broker down, skipped")
	// ErrResync ends the subscriptions a Breaker handed out when some
	// replica's announcements were lost to an outage: their followers
	// subscribe again and catch up from the database (Follower.Missed).
	ErrResync = errors.New("pubsub: announcements were lost during a broker outage; catching up")
)

// ResyncTopic is the topic on which a Breaker that closes its circuit after
// losing announcements tells every replica's Breaker so.
const ResyncTopic = "pubsub.resync"

// BreakerOptions tune a Breaker. Zero values take the defaults.
type BreakerOptions struct {
	// Timeout bounds each call (Publish, Ping, Do): one not answered by
	// then returns and counts as a failure, whatever the backend does.
	// Default 250 ms: durable events reach subscribers through the
	// database's poll within a second anyway.
	Timeout time.Duration
	// MinBackoff is how long the circuit stays open after the first
	// failure; each failed probe doubles it, up to MaxBackoff. Defaults
	// 1 s and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// Changed, if not nil, hears the circuit open (down true, with the
	// failure) and close again (down false, err nil), for the log. It runs
	// on the goroutine of the call or the probe that changed it, and must
	// not block.
	Changed func(down bool, err error)
	// Resync, if not nil, reports whether the subscribers of topic must
	// catch up when announcements were lost (see ErrResync); nil means all
	// of them. Durable streams, which poll the database anyway, need not.
	Resync func(topic string) bool
	// Panics recovers the panics of the Breaker's goroutines: a call's (it
	// fails, as an error would), the prober's (the probe fails), the
	// resync follower's (it subscribes again after a back-off, and then
	// resyncs, since the panic may have cost it a resync). Nil logs
	// them to slog.Default.
	Panics *panics.Guard
}

// errPanicked is the failure of a call or a probe that panicked.
var errPanicked = errors.New("pubsub: broker call panicked")

// Breaker is a circuit breaker around a broker, so that a broker that
// hangs costs its callers a short timeout once, not on every call.
//
// Publish and Ping run under Timeout. After one of them fails or times out,
// the circuit opens: every Publish and Ping returns ErrBrokerDown at once.
// The first call after a back-off (MinBackoff, doubling up to MaxBackoff
// while the broker stays down) starts a probe, a Ping on a goroutine of the
// Breaker's own, so no caller waits for it; the calls keep being skipped
// until it answers: success closes the circuit, failure opens it for the
// next back-off. A call whose own ctx is cancelled counts as no failure. Do
// runs other calls to what the broker relies on (the shared rate limits on
// the same Redis) under the same circuit.
//
// A skipped or failed Publish loses an announcement, on every replica.
// Durable streams find their events in the database at their next poll;
// latest-value followers only catch up when their subscription ends. So
// once the circuit closes again after losing announcements, the Breaker
// publishes on ResyncTopic, and every Breaker on the broker (every replica,
// this one included) ends the subscriptions it handed out (those Resync
// selects) with ErrResync: their Followers subscribe again and run Missed.
//
// Subscribe is not guarded: subscriptions are the Follower's business, and
// nothing a mutation does waits on one.
type Breaker struct {
	b    Broker
	opts BreakerOptions

	mu      sync.Mutex
	closed  bool
	open    bool
	until   time.Time     // while open: when the next probe may start
	backoff time.Duration // while open: the current back-off
	probing bool          // a probe is requested or under way
	lost    bool          // announcements were lost since the last resync
	subs    map[*Subscription]struct{}
	pruned  int // len(subs) after the last prune

	probes chan struct{} // a probe request for the prober
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

var _ Broker = (*Breaker)(nil)

// NewBreaker returns b behind a circuit breaker. Until Close it runs a
// prober and follows ResyncTopic on b (subscribing at once and waiting at
// most Timeout for that; a refusal is retried as Follower does). Close the
// Breaker, not b: it closes b.
func NewBreaker(b Broker, opts BreakerOptions) *Breaker {
	if opts.Timeout <= 0 {
		opts.Timeout = 250 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 5*time.Second)
	}
	ctx, stop := context.WithCancel(context.Background())
	br := &Breaker{b: b, opts: opts, subs: make(map[*Subscription]struct{}), probes: make(chan struct{}, 1), stop: stop}
	br.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-br.probes:
				if opts.Panics.Do(ctx, "broker.probe", func() { br.probe(ctx) }) {
					br.settle(ctx, true, errPanicked) // the next refused call asks for another
				}
			}
		}
	})
	subscribed := make(chan struct{})
	br.wg.Go(func() {
		sub, _ := b.Subscribe(ctx, ResyncTopic) // nil on failure: Run retries
		close(subscribed)
		br.followResync(ctx, sub)
	})
	t := time.NewTimer(opts.Timeout)
	defer t.Stop()
	select {
	case <-subscribed:
	case <-t.C:
	}
	return br
}

// followResync follows ResyncTopic from sub (nil: not subscribed yet)
// until ctx ends, ending the subscriptions handed out at each resync.
//
// A resync lost to a panic (the follower drops its subscription and takes
// another after a back-off) is made up for once subscribed again: the
// announcements it stood for would leave latest values stale. One missed
// while the broker dropped the subscription, or refused it from the start,
// is not: the other subscriptions went with it, and their followers catch
// up by themselves.
func (br *Breaker) followResync(ctx context.Context, sub *Subscription) {
	dropped := sub == nil // not subscribed for a reason of the broker's (Failed), rather than a panic
	Follower{
		Broker: br.b, Topic: ResyncTopic,
		Apply:  func([]byte) { br.resync() },
		Failed: func(error) { dropped = true },
		Missed: func() {
			if !dropped {
				br.resync()
			}
			dropped = false
		},
		Panics: br.opts.Panics, Where: "broker.resync",
	}.Run(ctx, sub, nil)
}

// Down reports whether the circuit is open: calls are skipped.
func (br *Breaker) Down() bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.open
}

// Publish publishes through the broker under the circuit: ErrBrokerDown at
// once while it is open, an error after Timeout when the broker does not
// answer in time. Either way the announcement is lost, and the subscribers
// catch up (see Breaker).
func (br *Breaker) Publish(ctx context.Context, topic string, payload []byte) error {
	err := br.Do(ctx, func(ctx context.Context) error { return br.b.Publish(ctx, topic, payload) })
	if err != nil && !cancelled(ctx, err) && br.resyncs(topic) {
		br.mu.Lock()
		br.lost = true
		br.mu.Unlock()
	}
	return err
}

// Ping asks the broker under the circuit: ErrBrokerDown at once while it is
// open, so a readiness check never waits on a broker known to be down.
func (br *Breaker) Ping(ctx context.Context) error {
	return br.Do(ctx, br.b.Ping)
}

// Do runs f, a call to what the broker relies on, under the circuit: it
// returns ErrBrokerDown without running f while the circuit is open,
// ErrClosed after Close, ctx's error when ctx has ended, and otherwise f's
// error, or a timeout error (wrapping context.DeadlineExceeded) once
// Timeout or ctx's deadline has passed, whether or not f has returned (f's
// ctx ends then). A failure or a timeout opens the circuit; ctx's
// cancellation does not count.
func (br *Breaker) Do(ctx context.Context, f func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := br.admit(); err != nil {
		return err
	}
	err := br.call(ctx, f)
	br.settle(ctx, false, err)
	return err
}

// admit lets a call through while the circuit is closed. It refuses the
// others, and every call after Close; the first refused once the back-off
// has ended requests a probe.
func (br *Breaker) admit() error {
	br.mu.Lock()
	defer br.mu.Unlock()
	switch {
	case br.closed:
		return ErrClosed
	case !br.open:
		return nil
	case !br.probing && !time.Now().Before(br.until):
		br.probing = true
		br.probes <- struct{}{} // never blocks: one request at a time, and the prober took the last
	}
	return ErrBrokerDown
}

// probe pings the broker for an open circuit, and announces a resync when
// that closes it.
func (br *Breaker) probe(ctx context.Context) {
	err := br.call(ctx, br.b.Ping)
	if br.settle(ctx, true, err) && err == nil {
		br.announceResync(ctx)
	}
}

// call runs f with Timeout and returns its answer, or a timeout error when
// none came in time.
func (br *Breaker) call(ctx context.Context, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, br.opts.Timeout)
	defer cancel()
	answer := make(chan error, 1)
	go func() {
		err := errPanicked
		br.opts.Panics.Do(ctx, "broker.call", func() { err = f(cctx) })
		answer <- err
	}()
	select {
	case err := <-answer:
		return err
	case <-cctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		return fmt.Errorf("pubsub: broker did not answer within %s: %w", br.opts.Timeout, context.DeadlineExceeded)
	}
}

// cancelled reports whether err is ctx's cancellation: the caller gave up.
func cancelled(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && ctx.Err() != nil
}

// settle records the outcome of a call (or of the probe) and reports
// whether the circuit is closed afterwards.
func (br *Breaker) settle(ctx context.Context, probe bool, err error) (closed bool) {
	var changed func()
	defer func() {
		if changed != nil && br.opts.Changed != nil {
			changed()
		}
	}()
	br.mu.Lock()
	defer br.mu.Unlock()
	if probe {
		br.probing = false
	}
	switch {
	case err == nil:
		if probe && br.open {
			br.open, br.backoff = false, 0
			changed = func() { br.opts.Changed(false, nil) }
		}
	case cancelled(ctx, err):
		// The caller gave up (or the Breaker closed): nothing learned.
	case !br.open:
		br.open, br.backoff = true, br.opts.MinBackoff
		br.until = time.Now().Add(br.backoff)
		changed = func() { br.opts.Changed(true, err) }
	case probe:
		br.backoff = min(2*br.backoff, br.opts.MaxBackoff)
		br.until = time.Now().Add(br.backoff)
	}
	return !br.open
}

// announceResync, when announcements were lost since the last resync,
// tells every replica (this one too) to catch up. A resync that fails is
// tried again after the next recovery.
func (br *Breaker) announceResync(ctx context.Context) {
	br.mu.Lock()
	lost := br.lost
	br.lost = false
	br.mu.Unlock()
	if !lost {
		return
	}
	if err := br.Do(ctx, func(ctx context.Context) error { return br.b.Publish(ctx, ResyncTopic, nil) }); err != nil {
		br.mu.Lock()
		br.lost = true
		br.mu.Unlock()
	}
}

// Subscribe subscribes through the broker, unguarded (see Breaker), and
// remembers the subscription for a resync.
func (br *Breaker) Subscribe(ctx context.Context, topic string) (*Subscription, error) {
	sub, err := br.b.Subscribe(ctx, topic)
	if err != nil || !br.resyncs(topic) {
		return sub, err
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	br.subs[sub] = struct{}{}
	if len(br.subs) > 2*br.pruned+16 {
		for s := range br.subs {
			if s.isDone() {
				delete(br.subs, s)
			}
		}
		br.pruned = len(br.subs)
	}
	return sub, nil
}

// resyncs reports whether topic's subscribers catch up after lost
// announcements (see BreakerOptions.Resync).
func (br *Breaker) resyncs(topic string) bool { return br.opts.Resync == nil || br.opts.Resync(topic) }

// resync ends every subscription handed out so far with ErrResync.
func (br *Breaker) resync() {
	br.mu.Lock()
	subs := br.subs
	br.subs, br.pruned = make(map[*Subscription]struct{}), 0
	br.mu.Unlock()
	for sub := range subs {
		sub.End(ErrResync)
	}
}

// Close stops the prober and following ResyncTopic, and closes the broker;
// later calls answer ErrClosed.
func (br *Breaker) Close() error {
	br.mu.Lock()
	br.closed = true
	br.mu.Unlock()
	br.stop()
	br.wg.Wait()
	return br.b.Close()
}

// AnnouncementLevel is the log level of an announcement that failed with
// err: debug when the breaker skipped it (the breaker logs the outage once,
// and the database carries the events meanwhile), warn otherwise.
func AnnouncementLevel(err error) slog.Level {
	if errors.Is(err, ErrBrokerDown) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
