package live

import (
	"context"

	"github.com/switchboardhq/switchboard/pubsub"
)

// Follow hands every payload of sub (a subscription to topic on broker) to
// apply until done is closed or ctx ends. When the broker drops the
// subscription (a slow reader, a Redis outage) it subscribes again as
// pubsub.Follower does (backing off from 50 ms to 5 s while that fails),
// and then calls missed, if not nil, since announcements may have been lost
// meanwhile. sub may be nil: the broker refused the first subscribe (Redis
// down at start), and Follow keeps trying as after a drop. The subscription
// held when Follow returns is closed.
func Follow(ctx context.Context, broker pubsub.Subscriber, topic string, sub *pubsub.Subscription,
	done <-chan struct{}, apply func(payload []byte), missed func()) {
	pubsub.Follower{Broker: broker, Topic: topic, Apply: apply, Missed: missed}.Run(ctx, sub, done)
}
