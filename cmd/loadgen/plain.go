package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// plainQuery is what -plain subscribers subscribe to: the document most
// clients write, without after, so each subscription starts from the
// stream's head when the server starts it.
const plainQuery = `subscription { statusPosted { id text createdAt } }`

// subscribePayload is the subscribe (start) payload of every connection:
// the plain document, or the one with after set to the newest id.
func subscribePayload(plain bool, after string) map[string]any {
	if plain {
		return map[string]any{"query": plainQuery}
	}
	return map[string]any{"query": subscriptionQuery, "variables": map[string]any{"a": after}}
}

// goroutineSampler scrapes the server's goroutines at an interval until
// stopped, and keeps the highest count seen: the figure a per-subscription
// goroutine that lives only until the first event would show, which
// samples at fixed points miss.
type goroutineSampler struct {
	max  atomic.Int64
	seen atomic.Bool
	stop context.CancelFunc
	done sync.WaitGroup
}

// sampleGoroutines starts sampling pr every interval.
func sampleGoroutines(ctx context.Context, pr *probe, interval time.Duration) *goroutineSampler {
	s := &goroutineSampler{}
	ctx, s.stop = context.WithCancel(ctx)
	s.done.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample(ctx, pr)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	})
	return s
}

func (s *goroutineSampler) sample(ctx context.Context, pr *probe) {
	n, ok := pr.goroutines(ctx)
	if !ok {
		return
	}
	s.seen.Store(true)
	for cur := s.max.Load(); n > cur && !s.max.CompareAndSwap(cur, n); cur = s.max.Load() {
	}
}

// finish stops sampling and returns the highest count seen.
func (s *goroutineSampler) finish() (int64, bool) {
	s.stop()
	s.done.Wait()
	return s.max.Load(), s.seen.Load()
}

// rssAfterEvents waits, in a goroutine of its own, until every subscriber
// has received n events (received reaches n × subscribers), reads the
// server's RSS then, and hands it to the returned function's caller: that
// function waits for the reading (or gives up when ctx ends) and reports
// whether there was one.
func rssAfterEvents(ctx context.Context, pr *probe, received func() int64, n, subscribers int64) func() (int64, bool) {
	var rss int64
	var ok bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for received() < n*subscribers {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
		rss, ok = pr.rssKiB()
	}()
	return func() (int64, bool) {
		<-done
		return rss, ok
	}
}
