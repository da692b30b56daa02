package live

import "sync"

// Pending is a queue of changes by key for one reader that may be busy:
// the changes of a key not taken yet are merged into one entry (Update),
// and the reader takes every entry at once, in the order their keys first
// changed (Take), after C signals. A slow reader thus gets one entry per
// key however many changes came, and nothing is lost.
type Pending[K comparable, V any] struct {
	mu     sync.Mutex
	values map[K]V
	order  []K
	signal chan struct{}
	// What the last Take handed out, emptied and filled again by the next
	// one: a queue that takes a change of every inbox or room list on each
	// event then makes no garbage per key.
	takenValues map[K]V
	takenOrder  []K
}

// NewPending returns an empty queue.
func NewPending[K comparable, V any]() *Pending[K, V] {
	return &Pending[K, V]{values: make(map[K]V), signal: make(chan struct{}, 1)}
}

// Update sets key's entry to merge(the entry not taken yet, whether there is
// one) and signals the reader.
func (p *Pending[K, V]) Update(key K, merge func(old V, queued bool) V) {
	p.mu.Lock()
	old, queued := p.values[key]
	if !queued {
		p.order = append(p.order, key)
	}
	p.values[key] = merge(old, queued)
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// Take returns the entries, by key in the order keys first changed, and
// empties the queue. What it returns is the reader's until its next Take,
// which reuses the memory.
func (p *Pending[K, V]) Take() ([]K, map[K]V) {
	p.mu.Lock()
	defer p.mu.Unlock()
	order, values := p.order, p.values
	if p.takenValues == nil {
		p.takenValues = make(map[K]V, len(values))
	}
	clear(p.takenValues)
	clear(p.takenOrder) // drop references the keys may hold
	p.order, p.values = p.takenOrder[:0], p.takenValues
	p.takenOrder, p.takenValues = order, values
	return order, values
}

// C receives a signal after an Update; the reader then Takes.
func (p *Pending[K, V]) C() <-chan struct{} { return p.signal }

// GroupBy splits keys into groups of equal key(k), in the order of each
// group's first key, leaving out the keys for which key reports false: the
// readers of one value, served with one result.
func GroupBy[K any, G comparable](keys []K, key func(K) (G, bool)) [][]K {
	// Two passes: each key's group first, then every group in one array of
	// its exact size. (Appending group by group grew each group's slice
	// from nothing: for 8,000 readers of one value, about twice their size
	// in garbage and as much copying.)
	const none = -1
	of := make([]int32, len(keys))
	var sizes []int
	at := make(map[G]int32)
	for i, k := range keys {
		g, ok := key(k)
		if !ok {
			of[i] = none
			continue
		}
		j, seen := at[g]
		if !seen {
			j = int32(len(sizes))
			at[g] = j
			sizes = append(sizes, 0)
		}
		of[i] = j
		sizes[j]++
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	all := make([]K, total)
	out := make([][]K, len(sizes))
	start := 0
	for j, n := range sizes {
		out[j] = all[start : start : start+n]
		start += n
	}
	for i, k := range keys {
		if j := of[i]; j != none {
			out[j] = append(out[j], k)
		}
	}
	return out
}
