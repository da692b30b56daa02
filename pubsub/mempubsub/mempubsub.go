// Package mempubsub is the in-process pubsub.Broker: the default when no
// REDIS_URL is configured. Publish hands the payload to each subscriber's
// buffer under a read lock, so concurrent publishers proceed in parallel and
// no publisher ever waits for a reader.
package mempubsub

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/switchboardhq/switchboard/pubsub"
)

var _ pubsub.Broker = (*Broker)(nil)

// Broker is an in-process pubsub.Broker. The zero value is not usable; call
// New.
type Broker struct {
	buffer int

	mu     sync.RWMutex
	closed bool
	topics map[string]map[*pubsub.Subscription]struct{}
}

// New returns a broker whose subscriptions buffer up to buffer messages (0
// means pubsub.DefaultBuffer).
func New(buffer int) *Broker {
	return &Broker{buffer: buffer, topics: make(map[string]map[*pubsub.Subscription]struct{})}
}

// Publish delivers payload to every current subscriber of topic. A subscriber
// whose buffer is full is dropped with pubsub.ErrSlowConsumer.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if err := b.refuseLocked(ctx); err != nil {
		return err
	}
	for sub := range b.topics[topic] {
		sub.Deliver(payload)
	}
	return nil
}

// Subscribe registers a subscriber of topic; see pubsub.Broker.
func (b *Broker) Subscribe(ctx context.Context, topic string) (*pubsub.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.refuseLocked(ctx); err != nil {
		return nil, err
	}
	var (
		sub  *pubsub.Subscription
		stop atomic.Pointer[func() bool]
	)
	sub = pubsub.NewSubscription(b.buffer, func() {
		if f := stop.Load(); f != nil {
			(*f)()
		}
		b.remove(topic, sub)
	})
	subs := b.topics[topic]
	if subs == nil {
		subs = make(map[*pubsub.Subscription]struct{})
		b.topics[topic] = subs
	}
	subs[sub] = struct{}{}
	f := context.AfterFunc(ctx, func() { sub.End(ctx.Err()) })
	stop.Store(&f)
	return sub, nil
}

func (b *Broker) remove(topic string, sub *pubsub.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if subs := b.topics[topic]; subs != nil {
		delete(subs, sub)
		if len(subs) == 0 {
			delete(b.topics, topic)
		}
	}
}

// Ping answers nil until the broker is closed (then pubsub.ErrClosed): an
// in-process broker has nothing to reach.
func (b *Broker) Ping(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.refuseLocked(ctx)
}

// refuseLocked is why a call with ctx is refused: ctx's error, or
// pubsub.ErrClosed; nil when it may proceed. Called with b.mu held.
func (b *Broker) refuseLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed {
		return pubsub.ErrClosed
	}
	return nil
}

// Close ends every subscription with pubsub.ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var all []*pubsub.Subscription
	for _, subs := range b.topics {
		for sub := range subs {
			all = append(all, sub)
		}
	}
	b.mu.Unlock()
	for _, sub := range all {
		sub.End(pubsub.ErrClosed)
	}
	return nil
}
