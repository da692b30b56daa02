package live

import "context"

// Ender is a context that can run a function when it ends without a
// context of its own per function (a subscriber's lifetime: see
// gqlws.SubscriberContext).
type Ender interface {
	OnEnd(f func())
}

// OnEnd calls f, on a goroutine of its own, once ctx ends, as
// context.AfterFunc does, with nothing to stop it. An Ender arranges it
// itself: a subscription that holds something for its subscriber (being
// online in a room, a room list followed) then costs a function in a
// list, where context.AfterFunc costs a context, a child in ctx's map of
// children and ctx's done channel, for as long as the subscription lives.
func OnEnd(ctx context.Context, f func()) {
	if e, ok := ctx.(Ender); ok {
		e.OnEnd(f)
		return
	}
	context.AfterFunc(ctx, f)
}
