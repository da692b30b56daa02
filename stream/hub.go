package stream

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/switchboardhq/switchboard/pubsub"
)

// hub is the single reader of one stream in this process. Its goroutine owns
// head and is the only sender on member channels; it closes a member's
// channel when it detaches the member.
type hub[T any] struct {
	f      *Feed[T]
	name   string
	cancel context.CancelFunc
	refs   int // guarded by f.mu

	mu      sync.Mutex // after Feed.mu in lock order
	stopped bool
	head    int64 // position of the last event emitted
	members map[*member[T]]struct{}
	// recent are the stream's latest events, in order and without a gap,
	// the last one at head when there are any (see recentAfter): at most
	// Options.Recent of them.
	recent []T
	reads  singleflight.Group // database reads of the whole stream in flight, by the position they read after
}

// member is one subscription's live queue.
type member[T any] struct{ c chan T }

// startHub subscribes to the stream's topic, reads its head and starts the
// hub's goroutine. Called with f.mu held.
func (f *Feed[T]) startHub(ctx context.Context, stream string) (*hub[T], error) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// A broker that refuses (Redis down) leaves the hub on database polls
	// until it takes the subscription (see run).
	sub, err := f.broker.Subscribe(hctx, stream)
	if err != nil {
		f.opts.Log.WarnContext(ctx, "stream follows the database until the broker is back", "stream", stream, "err", err)
		sub = nil
	}
	// Read the head after subscribing, so that nothing committed in between
	// is missed: announcements at or below head are skipped as duplicates.
	head, err := f.src.Head(ctx, stream)
	if err != nil {
		cancel()
		return nil, err
	}
	h := &hub[T]{
		f: f, name: stream, cancel: cancel, head: head,
		members: make(map[*member[T]]struct{}),
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		h.run(hctx, sub)
	}()
	return h, nil
}

// attach adds a member and returns it with the position of the last event
// emitted before it joined. ok is false when the hub has stopped.
func (h *hub[T]) attach(buffer int) (m *member[T], head int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, 0, false
	}
	m = &member[T]{c: make(chan T, buffer)}
	h.members[m] = struct{}{}
	return m, h.head, true
}

// detach removes m if it is still attached.
func (h *hub[T]) detach(m *member[T]) {
	if m == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.members[m]; ok {
		delete(h.members, m)
		close(m.c)
	}
}

// run is the hub's goroutine: it merges broker announcements and database
// polls into one ordered sequence until ctx ends. When the broker drops the
// subscription, the hub keeps polling and subscribes again as
// pubsub.Follower does, then fills from the database what it missed.
func (h *hub[T]) run(ctx context.Context, sub *pubsub.Subscription) {
	defer h.stop()
	pubsub.Follower{
		Broker: h.f.broker,
		Topic:  h.name,
		Apply:  func(payload []byte) { h.announce(ctx, payload) },
		Missed: func() { h.poll(ctx) },
		Failed: func(err error) {
			h.f.opts.Log.Warn("stream follows the database until its broker subscription is back", "stream", h.name, "err", err)
		},
		Poll:         func() { h.poll(ctx) },
		PollInterval: h.f.opts.PollInterval,
		Panics:       h.f.opts.Panics,
		Where:        "stream.follower",
	}.Run(ctx, sub, nil)
}

// announce handles one broker message.
func (h *hub[T]) announce(ctx context.Context, payload []byte) {
	// Decoding into *T tells a JSON null apart: for a pointer T it would
	// otherwise reach pos as a nil event.
	var decoded *T
	err := json.Unmarshal(payload, &decoded)
	if err == nil && decoded == nil {
		err = errors.New("null event")
	}
	if err != nil {
		h.f.opts.Log.Warn("stream dropped an undecodable announcement", "stream", h.name, "err", err)
		h.poll(ctx)
		return
	}
	ev := *decoded
	p := h.f.pos(ev)
	switch {
	case p <= h.head:
		return // already emitted
	case p > h.head+1:
		if !h.fill(ctx, p-1) {
			return // the poll will bring it, in order
		}
	}
	h.emit(ev)
}

// poll emits whatever the database holds beyond head.
func (h *hub[T]) poll(ctx context.Context) {
	dbHead, err := h.f.src.Head(ctx, h.name)
	if err != nil {
		if ctx.Err() == nil {
			h.f.opts.Log.Warn("stream poll failed", "stream", h.name, "err", err)
		}
		return
	}
	if dbHead > h.head {
		h.fill(ctx, dbHead)
	}
}

// fill emits the committed events after head up to upTo, and reports whether
// it got there.
func (h *hub[T]) fill(ctx context.Context, upTo int64) bool {
	for h.head < upTo {
		evs, err := h.f.src.After(ctx, h.name, h.head, h.f.opts.PageSize)
		if err != nil {
			if ctx.Err() == nil {
				h.f.opts.Log.Warn("stream fill failed", "stream", h.name, "after", h.head, "err", err)
			}
			return false
		}
		if len(evs) == 0 {
			return false
		}
		for _, ev := range evs {
			if h.f.pos(ev) > upTo {
				return true
			}
			h.emit(ev)
		}
	}
	return true
}

// emit hands ev to every member and advances head. A member whose buffer is
// full is detached: it will catch up from the database.
func (h *hub[T]) emit(ev T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remember([]T{ev}, h.head)
	h.head = h.f.pos(ev)
	for m := range h.members {
		select {
		case m.c <- ev:
		default:
			delete(h.members, m)
			close(m.c)
		}
	}
}

// stop detaches every member; their subscriptions end or re-join a new hub.
func (h *hub[T]) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for m := range h.members {
		delete(h.members, m)
		close(m.c)
	}
}

// Resumers share their reads through the hub's recent events.
//
// When many subscribers resume at once (every client of a restarted
// server), most ask for the same few events after the same cursor. The hub
// keeps the stream's latest events in memory (Options.Recent of them): the
// ones it emitted, and those a replay read from the database just before
// them. A replay after a position they cover reads nothing from the
// database; the first resumer at an older cursor reads once, and the ones
// after it find those events in memory.

// recentAfter returns the events after pos that the hub holds in memory,
// ok false when it does not hold the one right after pos. Events beyond
// the last returned come through the member's channel (it is attached
// before it replays) or, when it was already past, from the database.
func (h *hub[T]) recentAfter(pos int64) (evs []T, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recent) == 0 || pos >= h.head {
		return nil, pos == h.head
	}
	first := h.f.pos(h.recent[0])
	if pos+1 < first {
		return nil, false
	}
	return slices.Clone(h.recent[pos+1-first:]), true
}

// read returns a page of the whole stream after position after from the
// database, and offers it to the recent events (see share). Concurrent
// reads after the same position are one statement: the first caller's,
// run without its cancellation (the store bounds each statement), so that
// a caller that leaves does not fail the others.
func (h *hub[T]) read(ctx context.Context, after int64) ([]T, error) {
	v, err, _ := h.reads.Do(strconv.FormatInt(after, 10), func() (any, error) {
		evs, err := h.f.src.After(context.WithoutCancel(ctx), h.name, after, h.f.opts.PageSize)
		if err == nil {
			h.share(evs, after)
		}
		return evs, err
	})
	evs, _ := v.([]T)
	return evs, err
}

// share offers the hub the events a replay read from the database after
// position after: when they lead without a gap into the events it holds
// (or into its head, when it holds none), it keeps them too.
func (h *hub[T]) share(evs []T, after int64) {
	if len(evs) == 0 || h.f.opts.Recent == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.head + 1
	if len(h.recent) > 0 {
		first = h.f.pos(h.recent[0])
	}
	if after >= first-1 || h.f.pos(evs[len(evs)-1]) < first-1 {
		return // nothing older than what it holds, or not joining it
	}
	var older []T
	for i, ev := range evs {
		if p := h.f.pos(ev); p != after+int64(i)+1 {
			return // not contiguous: a part's events, or a gap
		} else if p < first {
			older = append(older, ev)
		}
	}
	// Keep the newest: what it holds, then as many older ones as fit.
	room := h.f.opts.Recent - len(h.recent)
	if room <= 0 {
		return
	}
	older = older[max(0, len(older)-room):]
	h.recent = append(older, h.recent...)
}

// remember appends evs, which follow position prev, to the recent events,
// dropping the oldest beyond Options.Recent; events that do not follow the
// recent ones without a gap replace them. Called with h.mu held.
func (h *hub[T]) remember(evs []T, prev int64) {
	n := h.f.opts.Recent
	if n == 0 {
		return
	}
	if len(h.recent) > 0 && h.f.pos(h.recent[len(h.recent)-1]) != prev {
		h.recent = h.recent[:0]
	}
	for _, ev := range evs {
		if len(h.recent) > 0 && h.f.pos(ev) != h.f.pos(h.recent[len(h.recent)-1])+1 {
			h.recent = h.recent[:0]
		}
		if len(h.recent) == n {
			copy(h.recent, h.recent[1:])
			h.recent = h.recent[:n-1]
		}
		h.recent = append(h.recent, ev)
	}
}
