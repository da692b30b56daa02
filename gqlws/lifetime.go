package gqlws

import (
	"context"
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
// returns ctx and true.
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
		op.life, op.endLife = context.WithCancel(context.Background())
		if op.ended.Load() {
			op.endLife()
		}
	}
	return op.life
}
