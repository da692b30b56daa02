package live

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/pubsub"
)

// Follow hands every payload of sub (a subscription to topic on broker) to
// apply until done is closed. When the broker drops the subscription (a
// slow reader, a Redis outage) it subscribes again, once a second until that
// works, and then calls missed, if not nil, since announcements may have
// been lost meanwhile. sub may be nil: the broker refused the first
// subscribe (Redis down at start), and Follow keeps trying as after a drop.
func Follow(ctx context.Context, broker pubsub.Broker, topic string, sub *pubsub.Subscription,
	done <-chan struct{}, apply func(payload []byte), missed func()) {
	for {
		if sub == nil {
			if sub = resubscribe(ctx, broker, topic, done); sub == nil {
				return
			}
			if missed != nil {
				missed()
			}
		}
		select {
		case <-done:
			sub.Close()
			return
		case payload, ok := <-sub.C():
			if ok {
				apply(payload)
			} else {
				sub = nil
			}
		}
	}
}

// resubscribe subscribes to topic once a second until the broker takes it;
// nil when done closes first.
func resubscribe(ctx context.Context, broker pubsub.Broker, topic string, done <-chan struct{}) *pubsub.Subscription {
	for {
		if sub, err := broker.Subscribe(ctx, topic); err == nil {
			return sub
		}
		select {
		case <-done:
			return nil
		case <-time.After(time.Second):
		}
	}
}
