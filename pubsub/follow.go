package pubsub

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/panics"
)

// Subscriber is the part of a Broker that a Follower needs.
type Subscriber interface {
	Subscribe(ctx context.Context, topic string) (*Subscription, error)
}

// Follower keeps one goroutine subscribed to a topic through everything
// that ends a subscription (a slow reader, a Redis outage): it is the one
// resubscribe policy of everything that follows a broker (the stream hubs;
// the chat, KPI and notification services and the sessions).
//
// The policy: after a drop or a refused Subscribe, the next attempt waits
// as Backoff says (50 ms, then twice as long each time, up to 5 s). The
// waits start again from 50 ms only once a subscription has lasted the
// longest wait, so a blip after a healthy stretch is recovered from at
// once, while a broker that keeps dropping subscriptions as soon as it takes
// them is retried ever more slowly rather than hammered. Polling the truth
// (Poll) goes on meanwhile; it is no occasion for an extra attempt, which
// would undo the backoff.
type Follower struct {
	// Broker is what the follower subscribes through; Topic is what to.
	Broker Subscriber
	Topic  string
	// Apply handles each payload, in the order the subscription delivers
	// them, on Run's goroutine.
	Apply func(payload []byte)
	// Missed, if not nil, runs after each subscription Run takes itself
	// (after a drop, or when it started with none): payloads published while
	// the follower was not subscribed are lost, and Missed catches up from
	// the truth (the database).
	Missed func()
	// Failed, if not nil, learns why a subscription ended and why an attempt
	// to subscribe again failed, for the log. An end or a failure caused by
	// Run's ctx is not reported.
	Failed func(err error)
	// Poll, if not nil, runs every PollInterval on Run's goroutine, between
	// payloads, subscribed or not: the stream hubs read the database there
	// for what no announcement brought.
	Poll         func()
	PollInterval time.Duration
	// Panics recovers a panic of Apply, Missed or Poll, reported under
	// Where: the follower then drops its subscription and, after a
	// panics.Backoff (1 s, doubling up to 30 s), subscribes again and calls
	// Missed, as after a drop. Nil logs to slog.Default. Each call is an
	// injection point named Where.
	Panics *panics.Guard
	Where  string
}

// Run follows the topic until ctx ends or done closes (a nil done never
// does), starting from sub, a subscription to the topic; sub may be nil when
// the caller's Subscribe was refused, and Run then subscribes as after a
// drop. Run closes the subscription it holds when it returns.
func (f Follower) Run(ctx context.Context, sub *Subscription, done <-chan struct{}) {
	var (
		backoff Backoff
		after   panics.Backoff   // restarts after a panic
		since   time.Time        // when sub was taken
		retry   <-chan time.Time // fires for the next attempt while sub is nil
		poll    <-chan time.Time
	)
	// restart drops the subscription after a panic: the next one is taken
	// after the panic's back-off, and Missed catches up.
	restart := func() {
		if sub != nil {
			sub.Close()
		}
		sub, retry = nil, time.After(after.Next(time.Now()))
	}
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	// The callbacks' panics restart the subscription (see call); one in
	// the loop itself, which would be a bug of its own, ends Run.
	defer f.Panics.Recover(ctx, f.Where, nil)
	if f.Poll != nil {
		t := time.NewTicker(f.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	if sub == nil {
		retry = time.After(backoff.Next())
	} else {
		since = time.Now()
	}
	for {
		var msgs <-chan []byte
		if sub != nil {
			msgs = sub.C()
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case payload, ok := <-msgs:
			if ok {
				if f.call(ctx, func() { f.Apply(payload) }) {
					restart()
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			f.failed(sub.Err())
			if time.Since(since) >= maxBackoff {
				backoff.Reset()
			}
			sub, retry = nil, time.After(backoff.Next())
		case <-retry:
			if sub = f.subscribe(ctx); sub == nil {
				if ctx.Err() != nil {
					return
				}
				retry = time.After(backoff.Next())
				continue
			}
			since, retry = time.Now(), nil
			if f.Missed != nil && f.call(ctx, f.Missed) {
				restart()
			}
		case <-poll:
			if f.call(ctx, f.Poll) {
				restart()
			}
		}
	}
}

// call runs one of the follower's callbacks, as the injection point Where,
// and reports whether it panicked (see Panics).
func (f Follower) call(ctx context.Context, fn func()) bool {
	return f.Panics.Do(ctx, f.Where, fn)
}

// subscribe makes one attempt to subscribe, and returns nil when it fails.
func (f Follower) subscribe(ctx context.Context) *Subscription {
	sub, err := f.Broker.Subscribe(ctx, f.Topic)
	if err != nil {
		if ctx.Err() == nil {
			f.failed(err)
		}
		return nil
	}
	return sub
}

func (f Follower) failed(err error) {
	if f.Failed != nil {
		f.Failed(err)
	}
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Backoff spaces the attempts to reach a failing dependency (a broker, a
// database): 50 ms before the first, twice as long before each next one, up
// to 5 s. The zero value is ready to use; a Backoff is not safe for
// concurrent use.
type Backoff struct{ next time.Duration }

// Next returns how long to wait before the next attempt, and doubles the
// wait after it.
func (b *Backoff) Next() time.Duration {
	d := max(b.next, minBackoff)
	b.next = min(2*d, maxBackoff)
	return d
}

// Reset makes the next wait 50 ms again, after an attempt that worked.
func (b *Backoff) Reset() { b.next = 0 }

// Wait waits as Next says, and reports false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
