package live

// Recent is the newest n keys added to it, repeats included. A group that
// keeps each scope's newest value for the subscribers on their way in keeps
// the values of scopes without subscribers while they are among the newest
// n: Add says which key has dropped out.
type Recent[K comparable] struct {
	n     int
	q     []K // oldest first
	count map[K]int
}

// NewRecent returns an empty Recent of the newest n keys.
func NewRecent[K comparable](n int) *Recent[K] {
	return &Recent[K]{n: n, count: make(map[K]int)}
}

// Add adds k; if that pushes a key out of the newest n altogether (it is
// not among them again), that key is dropped and ok is true.
func (r *Recent[K]) Add(k K) (dropped K, ok bool) {
	r.q = append(r.q, k)
	r.count[k]++
	if len(r.q) <= r.n {
		return dropped, false
	}
	old := r.q[0]
	r.q = r.q[1:]
	if r.count[old]--; r.count[old] > 0 {
		return dropped, false
	}
	delete(r.count, old)
	return old, true
}

// Has reports whether k is among the newest n keys.
func (r *Recent[K]) Has(k K) bool { return r.count[k] > 0 }
