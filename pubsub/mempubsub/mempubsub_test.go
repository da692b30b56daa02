package mempubsub_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
)

func newBroker(t testing.TB, buffer int) pubsub.Broker {
	b := mempubsub.New(buffer)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) { pubsubtest.Run(t, newBroker) }

// BenchmarkFanOut measures one Publish delivered to N subscribers that keep
// up, reported per delivery.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			br := mempubsub.New(1024)
			defer br.Close()
			ctx := context.Background()
			subs := make([]*pubsub.Subscription, n)
			for i := range subs {
				s, err := br.Subscribe(ctx, "bench")
				if err != nil {
					b.Fatal(err)
				}
				subs[i] = s
			}
			payload := []byte(`{"id":"1","text":"hello"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := br.Publish(ctx, "bench", payload); err != nil {
					b.Fatal(err)
				}
				for _, s := range subs {
					<-s.C()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
