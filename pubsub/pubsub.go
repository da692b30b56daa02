// Package pubsub defines the Broker contract that carries live events between
// the parts of Switchboard, and between replicas of it.
//
// A broker is a latency path, not a store: every durable event is committed
// to the database before it is published, and the stream package fills from
// the database whatever a broker did not deliver. So a broker promises only:
//
//   - A subscriber receives the messages published to its topic after
//     Subscribe returned, in the order one publisher published them.
//   - Publish never waits for a subscriber. Each subscription has a bounded
//     buffer; a subscriber that falls more than its buffer behind is dropped:
//     its channel is closed and Err reports ErrSlowConsumer. The subscriber
//     recovers by subscribing again and reading what it missed from the
//     database; Follower does both, with the one resubscribe policy.
//   - Payloads are opaque bytes, delivered unchanged. A payload delivered to
//     several subscribers is the same slice: receivers must not modify it.
//
// Backends live in subpackages (mempubsub, in process; redispubsub, across
// replicas) and all pass the suite in pubsubtest. Breaker puts any of them
// behind a circuit breaker, so that one that hangs costs publishers no
// more than a short timeout, once.
package pubsub

import (
	"context"
	"errors"
	"sync"
)

var (
	// ErrClosed is returned by a broker that has been closed, and reported by
	// the subscriptions it closed.
	ErrClosed = errors.New("pubsub: broker closed")
	// ErrSlowConsumer is reported by a subscription that was dropped because
	// its buffer was full.
	ErrSlowConsumer = errors.New("pubsub: subscriber too slow, dropped")
)

// Broker publishes opaque payloads to named topics.
type Broker interface {
	// Publish sends payload to every current subscriber of topic. It does
	// not wait for subscribers to read.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe delivers the messages published to topic after it returns, in
	// publish order. The subscription ends when ctx ends, when Close is called
	// on it or on the broker, or when it falls behind; then its channel is
	// closed and Err says why.
	Subscribe(ctx context.Context, topic string) (*Subscription, error)
	// Ping reports whether the broker can carry messages now: nil when it
	// can, the backend's error when what it relies on (Redis) does not
	// answer, ctx's error when ctx has ended, and ErrClosed after Close. It
	// returns by the time ctx ends, whatever the backend does. A failing
	// Ping ends no subscription; readiness checks call it.
	Ping(ctx context.Context) error
	// Close ends every subscription with ErrClosed and refuses further
	// Publish, Subscribe and Ping calls with ErrClosed.
	Close() error
}

// DefaultBuffer is the per-subscription buffer used when a broker is given
// none.
const DefaultBuffer = 256

// Subscription is one subscriber's view of a topic. Brokers create it with
// NewSubscription and feed it with Deliver; receivers read C.
type Subscription struct {
	c      chan []byte
	once   sync.Once
	mu     sync.Mutex
	err    error
	done   chan struct{}
	detach func()
}

// NewSubscription returns a subscription with room for buffer undelivered
// messages. detach, if not nil, is called once when the subscription ends, so
// the broker can forget it.
func NewSubscription(buffer int, detach func()) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Subscription{c: make(chan []byte, buffer), done: make(chan struct{}), detach: detach}
}

// C returns the channel of payloads. It is closed when the subscription ends.
func (s *Subscription) C() <-chan []byte { return s.c }

// Done is closed when the subscription ends, before C is drained.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err reports why the subscription ended: nil while it runs and after Close,
// ErrSlowConsumer, ErrClosed, or the error of the subscriber's context.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription; Err stays nil. It is safe to call more than
// once and concurrently with Deliver.
func (s *Subscription) Close() { s.End(nil) }

// Deliver queues payload without blocking. When the buffer is full the
// subscription ends with ErrSlowConsumer and Deliver returns false. Only the
// broker calls Deliver, and never concurrently with itself for one
// subscription.
func (s *Subscription) Deliver(payload []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.isDone() {
		return false
	}
	select {
	case s.c <- payload:
		return true
	default:
		s.endLocked(ErrSlowConsumer)
		return false
	}
}

// End ends the subscription with err (nil for a plain close). Only the first
// call has an effect.
func (s *Subscription) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(err)
}

func (s *Subscription) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Subscription) endLocked(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
		close(s.c)
		if s.detach != nil {
			// detach takes the broker's lock; run it outside ours to keep a
			// single lock order (broker, then subscription).
			go s.detach()
		}
	})
}
