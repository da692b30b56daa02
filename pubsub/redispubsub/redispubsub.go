// Package redispubsub is the pubsub.Broker for several replicas: topics are
// Redis channels, so a payload published by one replica reaches the
// subscribers of every replica.
//
// The broker uses a Redis client it is given and does not own: the process
// opens one client, shares it with whatever else uses the same Redis (the
// shared rate limits), and closes it after closing the broker. Whatever its
// number of subscribers, a broker uses the client's pool for PUBLISH and one
// connection of its own for all of its channel subscriptions (on a Redis
// Cluster, one per shard it listens on). A topic is subscribed in Redis once
// per replica, when its first local subscriber arrives, and the replica fans
// the messages out to its local subscribers itself.
//
// The client may be one Redis, a Sentinel-managed master (a failover
// client: after a failover the subscription connection fails, and its
// subscribers subscribe again, to the new master), or a Redis Cluster. On a
// cluster the broker uses sharded pub/sub (SPUBLISH, SSUBSCRIBE, Redis 7): a
// message travels only to the shard that owns its channel's slot, where
// plain PUBLISH is sent to every node of the cluster. A shard's subscription
// connection that fails (its master died, its slots moved) ends the
// subscriptions of that shard's topics alone; they subscribe again, to the
// slot's master of then.
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
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client, when it is a cluster's
	// stale says that the cluster's map of slots may be out of date: a
	// shard's connection failed, or a subscription on it did. The next
	// subscription reloads it first (the client reloads it by itself only
	// after its own commands fail).
	stale atomic.Bool
	opts  Options

	mu     sync.Mutex
	closed bool
	// shut mirrors closed for Publish and Ping, which must not wait for mu:
	// Subscribe holds it while it dials a Redis that may not answer.
	shut   atomic.Bool
	shards map[string]*shard // the subscription connections, by shard ("" off a cluster)
	topics map[string]*topic
	done   chan struct{}
	wg     sync.WaitGroup
}

// shard is one subscription connection: to the Redis, or on a cluster to
// the master of the slots of its channels.
type shard struct {
	node string // the master's address on a cluster, "" otherwise
	ps   *redis.PubSub
}

// topic is one Redis channel subscribed by this replica.
type topic struct {
	shard *shard
	subs  map[*pubsub.Subscription]struct{}
	ready chan struct{} // closed when Redis confirmed the subscription (or it failed)
	idle  time.Time     // when the last local subscriber left
}

// New returns a broker on client, which must stay open until the broker is
// closed; closing the broker does not close the client. New does not wait
// for Redis to answer: use Ping for that.
func New(client redis.UniversalClient, opts Options) *Broker {
	if opts.Prefix == "" {
		opts.Prefix = "switchboard:"
	}
	if opts.SubscribeTimeout <= 0 {
		opts.SubscribeTimeout = 5 * time.Second
	}
	if opts.IdleTopic <= 0 {
		opts.IdleTopic = 30 * time.Second
	}
	b := &Broker{client: client, opts: opts, shards: make(map[string]*shard), topics: make(map[string]*topic), done: make(chan struct{})}
	b.cluster, _ = client.(*redis.ClusterClient)
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
	var err error
	if b.cluster != nil {
		err = b.cluster.SPublish(ctx, b.opts.Prefix+topic, payload).Err()
	} else {
		err = b.client.Publish(ctx, b.opts.Prefix+topic, payload).Err()
	}
	if err != nil {
		return fmt.Errorf("redis publish %s: %w", topic, err)
	}
	return nil
}

// nodeFor returns the shard of channel: on a cluster, its slot's master
// (the client of that node, and its address); else the client itself.
func (b *Broker) nodeFor(ctx context.Context, channel string) (string, redis.UniversalClient, error) {
	if b.cluster == nil {
		return "", b.client, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.SubscribeTimeout)
	defer cancel()
	if b.stale.Swap(false) {
		b.cluster.ReloadState(ctx)
	}
	master, err := b.cluster.MasterForKey(ctx, channel)
	if err != nil {
		return "", nil, err
	}
	return master.Options().Addr, master, nil
}

// subscribe asks for channel on sh's connection: SSUBSCRIBE on a cluster.
func (b *Broker) subscribe(ctx context.Context, sh *shard, channels ...string) error {
	if sh.node != "" {
		return sh.ps.SSubscribe(ctx, channels...)
	}
	return sh.ps.Subscribe(ctx, channels...)
}

// unsubscribe gives channels up on sh's connection.
func (b *Broker) unsubscribe(ctx context.Context, sh *shard, channels ...string) error {
	if sh.node != "" {
		return sh.ps.SUnsubscribe(ctx, channels...)
	}
	return sh.ps.Unsubscribe(ctx, channels...)
}

// Subscribe delivers the messages published to topic, on any replica,
// after it returns; see pubsub.Broker. It returns once Redis has confirmed
// the channel subscription.
func (b *Broker) Subscribe(ctx context.Context, name string) (*pubsub.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, pubsub.ErrClosed
	}
	// The channel's shard, asked before taking mu: on a cluster this may
	// load the slots' map from a node.
	node, client, err := b.nodeFor(ctx, b.opts.Prefix+name)
	if err != nil {
		return nil, fmt.Errorf("redis subscribe %s: %w", name, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, pubsub.ErrClosed
	}
	t := b.topics[name]
	if t == nil {
		sh := b.shards[node]
		if sh == nil {
			sh = &shard{node: node}
			if node != "" {
				sh.ps = client.SSubscribe(context.Background())
			} else {
				sh.ps = client.Subscribe(context.Background())
			}
			b.shards[node] = sh
			b.wg.Add(1)
			go b.receive(sh)
		}
		t = &topic{shard: sh, subs: make(map[*pubsub.Subscription]struct{}), ready: make(chan struct{})}
		b.topics[name] = t
		if err := b.subscribe(ctx, sh, b.opts.Prefix+name); err != nil {
			delete(b.topics, name)
			b.mu.Unlock()
			b.stale.Store(b.cluster != nil)
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
		b.stale.Store(b.cluster != nil)
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

// receive reads a subscription connection until it fails or the broker
// closes. A panic ends the connection's subscriptions as a failure does.
func (b *Broker) receive(sh *shard) {
	defer b.wg.Done()
	defer b.opts.Panics.Recover(context.Background(), "redis.receive", func() { b.fail(sh) })
	for {
		msg, err := sh.ps.ReceiveTimeout(context.Background(), healthInterval)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Quiet for a while: make sure the connection is still alive
			// (a network cut sends no reset).
			if err = sh.ps.Ping(context.Background()); err == nil {
				continue
			}
		}
		if err != nil {
			b.fail(sh)
			return
		}
		b.handle(sh, msg)
	}
}

// handle acts on one message of sh's connection: a subscription's
// confirmation, or a message for the topic's subscribers.
func (b *Broker) handle(sh *shard, msg any) {
	b.opts.Panics.Point("redis.receive")
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
			return
		}
		if t := b.topics[m.Channel[len(b.opts.Prefix):]]; t != nil && t.shard == sh && b.shards[sh.node] == sh {
			select {
			case <-t.ready:
			default:
				close(t.ready)
			}
		}
	case *redis.Message:
		if t := b.topics[m.Channel[len(b.opts.Prefix):]]; t != nil && t.shard == sh && b.shards[sh.node] == sh {
			payload := []byte(m.Payload)
			for sub := range t.subs {
				sub.Deliver(payload)
			}
		}
	}
}

// fail ends every subscription of a failed (or closed) connection: their
// owners subscribe again and catch up.
func (b *Broker) fail(sh *shard) {
	b.mu.Lock()
	if b.shards[sh.node] != sh {
		b.mu.Unlock()
		return
	}
	delete(b.shards, sh.node)
	b.stale.Store(b.cluster != nil) // its master may have died, or its slots moved
	subs := b.dropTopicsLocked(sh)
	err := ErrDisconnected
	if b.closed {
		err = pubsub.ErrClosed
	}
	b.mu.Unlock()
	_ = sh.ps.Close()
	for _, sub := range subs {
		sub.End(err)
	}
}

// dropTopicsLocked forgets every topic of sh (of every shard, when sh is
// nil), releases whoever waits for their confirmation, and returns their
// subscriptions. Called with b.mu held.
func (b *Broker) dropTopicsLocked(sh *shard) []*pubsub.Subscription {
	var subs []*pubsub.Subscription
	for name, t := range b.topics {
		if sh != nil && t.shard != sh {
			continue
		}
		for sub := range t.subs {
			subs = append(subs, sub)
		}
		select {
		case <-t.ready:
		default:
			close(t.ready)
		}
		delete(b.topics, name)
	}
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
	idle := make(map[*shard][]string)
	for name, t := range b.topics {
		select {
		case <-t.ready: // only confirmed ones, so no confirmation is outstanding
		default:
			continue
		}
		if len(t.subs) == 0 && now.Sub(t.idle) >= b.opts.IdleTopic {
			idle[t.shard] = append(idle[t.shard], b.opts.Prefix+name)
			delete(b.topics, name)
		}
	}
	for sh, channels := range idle {
		if b.shards[sh.node] == sh {
			_ = b.unsubscribe(context.Background(), sh, channels...)
		}
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
	var shards []*shard
	for _, sh := range b.shards {
		shards = append(shards, sh)
	}
	b.mu.Unlock()
	close(b.done)
	for _, sh := range shards {
		_ = sh.ps.Close() // receive sees the error and ends the subscriptions
	}
	b.wg.Wait()
	b.mu.Lock()
	subs := b.dropTopicsLocked(nil)
	b.mu.Unlock()
	for _, sub := range subs {
		sub.End(pubsub.ErrClosed)
	}
	return nil
}
