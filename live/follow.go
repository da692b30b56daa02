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
// been lost meanwhile.
func Follow(ctx context.Context, broker pubsub.Broker, topic string, sub *pubsub.Subscription,
	done <-chan struct{}, apply func(payload []byte), missed func()) {
	for {
		select {
		case <-done:
			sub.Close()
			return
		case payload, ok := <-sub.C():
			if ok {
				apply(payload)
				continue
			}
			for {
				var err error
				if sub, err = broker.Subscribe(ctx, topic); err == nil {
					break
				}
				select {
				case <-done:
					return
				case <-time.After(time.Second):
				}
			}
			if missed != nil {
				missed()
			}
		}
	}
}
