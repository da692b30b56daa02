package gqlws

import (
	"context"
	"sync"
	"time"
)

// A subscription's lifetime, for what a resolver holds on the subscriber's
// behalf (being online in a chat room, say). A shareable subscription's
// resolver runs on the operation's private execution, which stops when the
// operation joins its group; the group's leader runs the resolver again,
// for nobody in particular. Neither context is the subscriber's: the first
// ends too early, the second lasts as long as the group.

// lifetimeKey marks the context of an operation's private execution (its
// value is the operation) and of a group's leader (nil).
type lifetimeKey struct{}

// SubscriberContext returns a context that ends when the subscription of
// ctx (a resolver's) ends, whether it runs privately or as a member of a
// group, and true; or false when ctx is a group leader's, which executes
// the operation for its members and is nobody's subscription (each member's
// own resolver ran privately before it joined). Outside this transport it
// returns ctx and true. Hold what ends with it through live.OnEnd (or
// context.AfterFunc) on the context as returned: a context made from it
// with context.WithValue hides how it runs them, and context.AfterFunc on
// that waits in a goroutine of its own.
func SubscriberContext(ctx context.Context) (context.Context, bool) {
	switch v := ctx.Value(lifetimeKey{}).(type) {
	case *operation:
		if v == nil {
			return nil, false
		}
		return v.lifetime(), true
	case context.Context: // WithLifetime
		return v, true
	}
	return ctx, true
}

// WithLifetime marks ctx as the private execution of a subscription that
// another transport serves (GraphQL over Server-Sent Events), whose
// subscriber lives as long as life: SubscriberContext returns life, which
// goes on when the execution stops to join a shared one.
func WithLifetime(ctx, life context.Context) context.Context {
	return context.WithValue(ctx, lifetimeKey{}, life)
}

// AsLeader marks ctx as that of a shared execution that another transport
// runs for its subscribers, which is nobody's subscription:
// SubscriberContext returns false.
func AsLeader(ctx context.Context) context.Context { return asLeader(ctx) }

// withOperation marks ctx as op's private execution's.
func withOperation(ctx context.Context, op *operation) context.Context {
	return context.WithValue(ctx, lifetimeKey{}, op)
}

// asLeader marks ctx as a group leader's.
func asLeader(ctx context.Context) context.Context {
	return context.WithValue(ctx, lifetimeKey{}, (*operation)(nil))
}

// lifetime returns a context that ends when op ends (see end); made on
// first use, so that operations whose resolvers hold nothing pay nothing.
func (op *operation) lifetime() context.Context {
	op.stateMu.Lock()
	defer op.stateMu.Unlock()
	if op.life == nil {
		op.life = &subscriberLife{}
		if op.ended.Load() {
			op.life.end()
		}
	}
	return op.life
}

// subscriberLife is an operation's lifetime (see SubscriberContext): a
// context that ends when the operation does, and no other's child. What a
// resolver holds until then is let go by a function in a list (see
// live.OnEnd, AfterFunc): it lives as long as the subscription, and a
// context per function, a map of them and a done channel, as
// context.WithCancel and context.AfterFunc keep, were about 2 KB of every
// connection's live heap in a busy room (a heap profile at 8,000 members:
// 21 MB of contexts, 2.5 MB now). Its done channel is made on first use.
type subscriberLife struct {
	mu    sync.Mutex
	ended bool
	done  chan struct{}
	fs    []func() // to run at the end (OnEnd, AfterFunc)
}

// lifeFunc is a function given to AfterFunc, until it runs or is stopped.
type lifeFunc struct {
	f       func()
	stopped bool
}

// Deadline, Done, Err and Value make a subscriberLife a context.Context.
func (l *subscriberLife) Deadline() (time.Time, bool) { return time.Time{}, false }

func (l *subscriberLife) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
		if l.ended {
			close(l.done)
		}
	}
	return l.done
}

func (l *subscriberLife) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return context.Canceled
	}
	return nil
}

func (l *subscriberLife) Value(any) any { return nil }

// OnEnd calls f on a goroutine of its own once the operation ends (see
// live.Ender).
func (l *subscriberLife) OnEnd(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		go f()
		return
	}
	l.fs = append(l.fs, f)
}

// AfterFunc is context.AfterFunc's for a subscriberLife, which
// context.AfterFunc and context.WithCancel use (its afterFuncer), rather
// than a goroutine each that waits for Done.
func (l *subscriberLife) AfterFunc(f func()) (stop func() bool) {
	lf := &lifeFunc{f: f}
	l.OnEnd(func() {
		l.mu.Lock()
		run := !lf.stopped
		lf.stopped = true
		l.mu.Unlock()
		if run {
			lf.f()
		}
	})
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		stopped := !lf.stopped
		lf.stopped = true
		return stopped
	}
}

// end ends the lifetime: its functions run, each on a goroutine of its own.
func (l *subscriberLife) end() {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	fs := l.fs
	l.fs = nil
	if l.done != nil {
		close(l.done)
	}
	l.mu.Unlock()
	for _, f := range fs {
		go f()
	}
}
