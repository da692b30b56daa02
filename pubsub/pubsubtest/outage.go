package pubsubtest

import (
	"context"
	"errors"
	"sync"

	"github.com/switchboardhq/switchboard/pubsub"
)

// ErrDown is what an Outage broker answers while it is down.
var ErrDown = errors.New("pubsubtest: broker down")

// Outage wraps a broker with a switch: going down ends every subscription
// and refuses publishes, new subscriptions and pings, as a Redis outage
// does.
type Outage struct {
	pubsub.Broker
	mu   sync.Mutex
	down bool
	subs []*pubsub.Subscription
}

// NewOutage returns b behind the switch, up.
func NewOutage(b pubsub.Broker) *Outage { return &Outage{Broker: b} }

// Subscribe subscribes through the wrapped broker unless it is down.
func (o *Outage) Subscribe(ctx context.Context, topic string) (*pubsub.Subscription, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down {
		return nil, ErrDown
	}
	sub, err := o.Broker.Subscribe(ctx, topic)
	if err == nil {
		o.subs = append(o.subs, sub)
	}
	return sub, err
}

// Publish publishes through the wrapped broker unless it is down.
func (o *Outage) Publish(ctx context.Context, topic string, payload []byte) error {
	if o.isDown() {
		return ErrDown
	}
	return o.Broker.Publish(ctx, topic, payload)
}

// Ping fails with ErrDown while the broker is down, and asks the wrapped
// broker otherwise.
func (o *Outage) Ping(ctx context.Context) error {
	if o.isDown() {
		return ErrDown
	}
	return o.Broker.Ping(ctx)
}

func (o *Outage) isDown() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.down
}

// SetDown takes the broker down (ending every subscription) or up again.
func (o *Outage) SetDown(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = down
	if down {
		for _, sub := range o.subs {
			sub.End(ErrDown)
		}
		o.subs = nil
	}
}
