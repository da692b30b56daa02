package stream

import "sort"

// Recent keeps the last events applied from one stream, to bring up to
// date a value read from the database that is exact at a position of the
// stream (a count read with the stream's head in one statement): the events
// applied beyond that position are added to it, those up to it are not
// added again. It is what keeps live counts (the unread counts of
// notifications and of rooms) without a statement per event. The zero
// value is not ready: use NewRecent. Not safe for concurrent use.
type Recent[T any] struct {
	pos     func(T) int64
	size    int
	applied int64 // position of the last event applied
	from    int64 // evs holds every event after from
	evs     []T   // the last ones applied, oldest first
}

// NewRecent returns a Recent that keeps at least the last size events
// applied (at most twice as many), positioned by pos.
func NewRecent[T any](size int, pos func(T) int64) *Recent[T] {
	return &Recent[T]{pos: pos, size: max(size, 1)}
}

// Apply records ev, the next event of the stream (in order, without a
// gap), and reports whether it is new: false when an event at or beyond
// its position was applied already.
func (r *Recent[T]) Apply(ev T) bool {
	p := r.pos(ev)
	if p <= r.applied {
		return false
	}
	if r.applied == 0 {
		r.from = p - 1 // the first one since the stream is followed
	}
	r.applied = p
	r.evs = append(r.evs, ev)
	if len(r.evs) > 2*r.size {
		drop := len(r.evs) - r.size
		r.from = r.pos(r.evs[drop-1])
		r.evs = append([]T(nil), r.evs[drop:]...)
	}
	return true
}

// Applied is the position of the last event applied (0: none yet).
func (r *Recent[T]) Applied() int64 { return r.applied }

// After returns the events applied after position head, oldest first,
// and the position a value exact at head is exact at once they are added
// (the later of head and Applied). ok is false when some of them are no
// longer kept: the value is too old to bring up to date, and must be read
// again.
func (r *Recent[T]) After(head int64) (evs []T, at int64, ok bool) {
	if head >= r.applied {
		return nil, head, true
	}
	if head < r.from {
		return nil, 0, false
	}
	i := sort.Search(len(r.evs), func(i int) bool { return r.pos(r.evs[i]) > head })
	return r.evs[i:], r.applied, true
}
