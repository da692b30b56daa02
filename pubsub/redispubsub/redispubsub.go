// Package redispubsub is the pubsub.Broker for several replicas: topics are
// Redis channels, so a payload published by one replica reaches the
// subscribers of every replica.
//
// The broker uses a Redis client it is given and does not own: the process
// opens one client, shares it with whatever else uses the same Redis (the
// shared rate limits), and closes it after closing the broker. Whatever its
// number of subscribers, a broker uses the client's pool for PUBLISH and one
// connection of its own for all of its channel subscriptions. A topic is
// subscribed in Redis once per replica, when its first local subscriber
// arrives, and the replica fans the messages out to its local subscribers
// itself.
//
// Channel per topic, not a pattern subscription: a replica then receives
// only the topics it has subscribers for (a chat room nobody on this replica
// has open costs it nothing), where a pattern like "switchboard:*" would
// deliver every message of every replica to every replica.
//
// When the subscription connection fails (Redis restarts, the network
// drops), every local subscription ends with ErrDisconnected: its owner
// subscribes again, which succeeds once Redis is back, and catches up from
// the database for what it missed (see package stream). Publish fails while
// Redis is away; durable events are committed before they are published, so
// nothing is lost, only delayed to the next database poll.
package redispubsub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
)

var _ pubsub.Broker = (*Broker)(nil)

// ErrDisconnected ends the subscriptions of a broker whose connection to
// Redis failed: messages may have been missed.
var ErrDisconnected = errors.New("redispubsub: connection to redis lost")

// Options tune a Broker. Zero values take the defaults.
type Options struct {
	// Prefix is prepended to every topic to make its channel name, so that
	// several deployments can share a Redis. Default "switchboard:".
	Prefix string
	// Buffer is each subscription's buffer (pubsub.DefaultBuffer when 0).
	Buffer int
	// SubscribeTimeout bounds the wait for Redis to confirm a new channel
	// subscription. Default 5s.
	SubscribeTimeout time.Duration
	// IdleTopic is how long a channel stays subscribed in Redis after its
	// last local subscriber left, so that a quick return costs nothing.
	// Default 30s.
	IdleTopic time.Duration
	// Panics recovers the panics of the broker's goroutines: the
	// subscription connection's reader (a panic ends its subscriptions, as
	// a failed connection does, and their owners subscribe again), the
	// idle-channel sweep (one round), a Ping's call. Nil logs them to
	// slog.Default.
	Panics *panics.Guard
}

// healthInterval is how long the subscription connection may be quiet
// before it is pinged.
const healthInterval = 15 * time.Second

// Broker is a pubsub.Broker on Redis.
type Broker struct {
	client *redis.Client
	opts   Options

	mu     sync.Mutex
	closed bool
	// shut mirrors closed for Publish and Ping, which must not wait for mu:
	// Subscribe holds it while it dials a Redis that may not answer.
	shut   atomic.Bool
	ps     *redis.PubSub // the subscription connection; nil until needed and after a failure
	topics map[string]*topic
	done   chan struct{}
	wg     sync.WaitGroup
}

// topic is one Redis channel subscribed by this replica.
type topic struct {
	subs  map[*pubsub.Subscription]struct{}
	ready chan struct{} // closed when Redis confirmed the subscription (or it failed)
	idle  time.Time     // when the last local subscriber left
}

// New returns a broker on client, which must stay open until the broker is
// closed; closing the broker does not close the client. New does not wait
// for Redis to answer: use Ping for that.
func New(client *redis.Client, opts Options) *Broker {
	if opts.Prefix == "" {
		opts.Prefix = "switchboard:"
	}
	if opts.SubscribeTimeout <= 0 {
		opts.SubscribeTimeout = 5 * time.Second
	}
	if opts.IdleTopic <= 0 {
		opts.IdleTopic = 30 * time.Second
	}
	b := &Broker{client: client, opts: opts, topics: make(map[string]*topic), done: make(chan struct{})}
	b.wg.Add(1)
	go b.sweep()
	return b
}

// Ping checks that Redis answers a PING; see pubsub.Broker. go-redis
// heeds ctx's deadline only on a client with ContextTimeoutEnabled (the
// server's is), and never its cancellation, so the PING runs on a
// goroutine of its own, which ends within the client's dial and read
// timeouts even when Ping has returned for ctx.
func (b *Broker) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.isClosed() {
		return pubsub.ErrClosed
	}
	answer := make(chan error, 1)
	go func() {
		err := errPanicked
		b.opts.Panics.Do(ctx, "redis.ping", func() { err = b.client.Ping(ctx).Err() })
		answer <- err
	}()
	select {
	case err := <-answer:
		if err != nil {
			return fmt.Errorf("redis ping: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) isClosed() bool { return b.shut.Load() }

// Publish sends payload to the subscribers of topic on every replica.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if b.isClosed() {
		return pubsub.ErrClosed
	}
	if err := b.client.Publish(ctx, b.opts.Prefix+topic, payload).Err(); err != nil {
		return fmt.Errorf("redis publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe delivers the messages published to topic, on any replica,
// after it returns; see pubsub.Broker. It returns once Redis has confirmed
// the channel subscription.
func (b *Broker) Subscribe(ctx context.Context, name string) (*pubsub.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, pubsub.ErrClosed
	}
	if b.ps == nil {
		b.ps = b.client.Subscribe(context.Background())
		b.wg.Add(1)
		go b.receive(b.ps)
	}
	t := b.topics[name]
	if t == nil {
		t = &topic{subs: make(map[*pubsub.Subscription]struct{}), ready: make(chan struct{})}
		b.topics[name] = t
		if err := b.ps.Subscribe(ctx, b.opts.Prefix+name); err != nil {
			delete(b.topics, name)
			b.mu.Unlock()
			return nil, fmt.Errorf("redis subscribe %s: %w", name, err)
		}
	}
	var sub *pubsub.Subscription
	sub = pubsub.NewSubscription(b.opts.Buffer, func() { b.remove(name, t, sub) })
	t.subs[sub] = struct{}{}
	ready := t.ready
	b.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { sub.End(ctx.Err()) })
	timer := time.NewTimer(b.opts.SubscribeTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		if err := sub.Err(); err != nil {
			stop()
			return nil, err
		}
		return sub, nil
	case <-sub.Done():
		stop()
		if err := sub.Err(); err != nil {
			return nil, err
		}
		return nil, pubsub.ErrClosed
	case <-timer.C:
		stop()
		sub.End(ErrDisconnected)
		return nil, fmt.Errorf("redis subscribe %s: not confirmed within %s", name, b.opts.SubscribeTimeout)
	}
}

// remove forgets a local subscription; the Redis channel stays subscribed
// until sweep finds it idle.
func (b *Broker) remove(name string, t *topic, sub *pubsub.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(t.subs, sub)
	if len(t.subs) == 0 {
		t.idle = time.Now()
	}
}

// errPanicked is the failure of a Ping whose call panicked.
var errPanicked = errors.New("redis ping panicked")

// receive reads the subscription connection until it fails or the broker
// closes. A panic ends the connection's subscriptions as a failure does.
func (b *Broker) receive(ps *redis.PubSub) {
	defer b.wg.Done()
	defer b.opts.Panics.Recover(context.Background(), "redis.receive", func() { b.fail(ps) })
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), healthInterval)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Quiet for a while: make sure the connection is still alive
			// (a network cut sends no reset).
			if err = ps.Ping(context.Background()); err == nil {
				continue
			}
		}
		if err != nil {
			b.fail(ps)
			return
		}
		b.handle(ps, msg)
	}
}

// handle acts on one message of the subscription connection ps: a
// subscription's confirmation, or a message for the topic's subscribers.
func (b *Broker) handle(ps *redis.PubSub, msg any) {
	b.opts.Panics.Point("redis.receive")
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" {
			return
		}
		if t := b.topics[m.Channel[len(b.opts.Prefix):]]; t != nil && b.ps == ps {
			select {
			case <-t.ready:
			default:
				close(t.ready)
			}
		}
	case *redis.Message:
		if t := b.topics[m.Channel[len(b.opts.Prefix):]]; t != nil && b.ps == ps {
			payload := []byte(m.Payload)
			for sub := range t.subs {
				sub.Deliver(payload)
			}
		}
	}
}

// fail ends every subscription of a failed (or closed) connection: their
// owners subscribe again and catch up.
func (b *Broker) fail(ps *redis.PubSub) {
	b.mu.Lock()
	if b.ps != ps {
		b.mu.Unlock()
		return
	}
	b.ps = nil
	subs := b.dropTopicsLocked()
	err := ErrDisconnected
	if b.closed {
		err = pubsub.ErrClosed
	}
	b.mu.Unlock()
	_ = ps.Close()
	for _, sub := range subs {
		sub.End(err)
	}
}

// dropTopicsLocked forgets every topic, releases whoever waits for their
// confirmation, and returns their subscriptions. Called with b.mu held.
func (b *Broker) dropTopicsLocked() []*pubsub.Subscription {
	var subs []*pubsub.Subscription
	for _, t := range b.topics {
		for sub := range t.subs {
			subs = append(subs, sub)
		}
		select {
		case <-t.ready:
		default:
			close(t.ready)
		}
	}
	b.topics = make(map[string]*topic)
	return subs
}

// sweep unsubscribes channels that have had no local subscriber for
// IdleTopic.
func (b *Broker) sweep() {
	defer b.wg.Done()
	tick := time.NewTicker(b.opts.IdleTopic / 2)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			return
		case now := <-tick.C:
			b.opts.Panics.Do(context.Background(), "redis.sweep", func() { b.sweepIdle(now) })
		}
	}
}

// sweepIdle unsubscribes the channels idle for IdleTopic at now.
func (b *Broker) sweepIdle(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var idle []string
	for name, t := range b.topics {
		select {
		case <-t.ready: // only confirmed ones, so no confirmation is outstanding
		default:
			continue
		}
		if len(t.subs) == 0 && now.Sub(t.idle) >= b.opts.IdleTopic {
			idle = append(idle, b.opts.Prefix+name)
			delete(b.topics, name)
		}
	}
	if len(idle) > 0 && b.ps != nil {
		_ = b.ps.Unsubscribe(context.Background(), idle...)
	}
}

// Close ends every subscription with pubsub.ErrClosed and closes the
// subscription connection; the client stays open for its owner to close.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.shut.Store(true)
	ps := b.ps
	b.mu.Unlock()
	close(b.done)
	if ps != nil {
		_ = ps.Close() // receive sees the error and ends the subscriptions
	}
	b.wg.Wait()
	b.mu.Lock()
	subs := b.dropTopicsLocked()
	b.mu.Unlock()
	for _, sub := range subs {
		sub.End(pubsub.ErrClosed)
	}
	return nil
}
