package live

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/panics"
)

// Watchers are latest-value watchers grouped by key (a module, a user, a
// dashboard size), each fed from a read of the truth (the database).
//
// Every read is delivered under one lock with the read itself, so a watcher
// never ends with an older value delivered after a newer one: a watcher
// that starts while a refresh of its key runs gets the newer of the two
// last. A new watcher is registered before its first read, so a change
// committed meanwhile is not lost (at worst it is read twice). A read that
// finds the value kept for its key (reflect.DeepEqual) sends nothing: two
// refreshes of two changes close together may both read the state after
// the second, and a subscriber would get it twice.
//
// A key's value is read once per refresh, whatever its number of watchers,
// and kept while the key has watchers: a watcher that starts then gets the
// kept value at once, without a read (it is as new as the last refresh,
// and every later refresh reaches it). Each value read gets a version,
// higher for later reads, which the watchers' streams report to a version
// recorder (WithVersionRecorder), so that the subscribers of one selection
// can share one execution per new value.
type Watchers[K comparable, T any] struct {
	// Panics recovers a panic of a watcher's goroutine (its channel then
	// closes); set it before the first Watch. Nil logs to slog.Default.
	Panics *panics.Guard

	mu      sync.Mutex
	byKey   map[K]map[*Latest[T]]struct{}
	last    map[K]versioned[T] // each watched key's newest value, and for keepFor after its last watcher left
	readMu  sync.Mutex         // serializes reads; guards version
	version int64              // the version of the newest read
}

// versioned is a value and its version.
type versioned[T any] struct {
	v         T
	version   int64
	unwatched time.Time // when its key's last watcher left; zero while it has watchers
}

// keepFor is how long a key's value stays kept after its last watcher
// left, unless the key changes meanwhile: a subscriber that hands over from
// a watcher of its own to a shared one (a gqlws group's leader) then gets
// the same value under the same version, instead of the same value read
// again under a newer version, which would reach it twice.
const keepFor = time.Second

// Watch returns key's values: the current one at once (the value kept for
// key's watchers, or else read's), then each one Refresh delivers, until
// ctx ends.
func (ws *Watchers[K, T]) Watch(ctx context.Context, key K, read func() (T, error)) (<-chan T, error) {
	w := NewLatest[T]()
	ws.mu.Lock()
	if ws.byKey == nil {
		ws.byKey = make(map[K]map[*Latest[T]]struct{})
		ws.last = make(map[K]versioned[T])
	}
	if ws.byKey[key] == nil {
		ws.byKey[key] = make(map[*Latest[T]]struct{})
	}
	ws.byKey[key][w] = struct{}{}
	if cur, ok := ws.last[key]; ok && !cur.unwatched.IsZero() { // watched again
		if time.Since(cur.unwatched) > keepFor {
			delete(ws.last, key)
		} else {
			cur.unwatched = time.Time{}
			ws.last[key] = cur
		}
	}
	ws.mu.Unlock()
	forget := func() {
		ws.mu.Lock()
		delete(ws.byKey[key], w)
		if len(ws.byKey[key]) == 0 {
			delete(ws.byKey, key)
			now := time.Now()
			if cur, ok := ws.last[key]; ok {
				cur.unwatched = now
				ws.last[key] = cur
			}
			ws.sweepLocked(now)
		}
		ws.mu.Unlock()
	}
	ws.readMu.Lock()
	ws.mu.Lock()
	cur, kept := ws.last[key]
	ws.mu.Unlock()
	var err error
	if !kept {
		cur, _, err = ws.readLocked(key, read)
	}
	if err == nil {
		w.SetVersion(cur.v, cur.version)
	}
	ws.readMu.Unlock()
	if err != nil {
		forget()
		return nil, err
	}
	go w.RunGuarded(ctx, forget, ws.Panics, "live.watcher")
	return w.C(), nil
}

// readLocked reads key's value and keeps it (see keepLocked). Called with
// readMu held.
func (ws *Watchers[K, T]) readLocked(key K, read func() (T, error)) (cur versioned[T], changed bool, err error) {
	v, err := read()
	if err != nil {
		return versioned[T]{}, false, err
	}
	cur, changed = ws.keepLocked(key, v)
	return cur, changed, nil
}

// keepLocked gives v, key's value just read, the next version, and keeps
// it while key has watchers; unless v equals the value kept for key (two
// refreshes for two changes close together both read the state after the
// second): then that value and its version stay, and changed is false, as
// there is nothing new to deliver. Called with readMu held.
func (ws *Watchers[K, T]) keepLocked(key K, v T) (cur versioned[T], changed bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if prev, ok := ws.last[key]; ok && prev.unwatched.IsZero() && reflect.DeepEqual(prev.v, v) {
		return prev, false
	}
	ws.version++
	cur = versioned[T]{v: v, version: ws.version}
	if ws.byKey[key] != nil {
		ws.last[key] = cur
	}
	return cur, true
}

// sweepLocked forgets the values kept longer than keepFor after their
// key's last watcher left. Called with mu held.
func (ws *Watchers[K, T]) sweepLocked(now time.Time) {
	for k, cur := range ws.last {
		if !cur.unwatched.IsZero() && now.Sub(cur.unwatched) > keepFor {
			delete(ws.last, k)
		}
	}
}

// Refresh reads key's value and delivers it to its watchers; without
// watchers it reads nothing, and forgets the value kept for a moment
// after the last one left (it is stale now).
func (ws *Watchers[K, T]) Refresh(key K, read func() (T, error)) error {
	ws.mu.Lock()
	watched := len(ws.byKey[key]) > 0
	if !watched {
		delete(ws.last, key) // kept after its last watcher left, and stale now
	}
	ws.mu.Unlock()
	if !watched {
		return nil
	}
	ws.readMu.Lock()
	defer ws.readMu.Unlock()
	cur, changed, err := ws.readLocked(key, read)
	if err != nil || !changed {
		return err
	}
	ws.deliver(key, cur)
	return nil
}

// deliver hands cur to key's watchers.
func (ws *Watchers[K, T]) deliver(key K, cur versioned[T]) {
	ws.mu.Lock()
	for w := range ws.byKey[key] {
		w.SetVersion(cur.v, cur.version)
	}
	ws.mu.Unlock()
}

// Len reports how many watchers key has.
func (ws *Watchers[K, T]) Len(key K) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.byKey[key])
}

// Keys returns the keys that have watchers.
func (ws *Watchers[K, T]) Keys() []K {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	keys := make([]K, 0, len(ws.byKey))
	for k := range ws.byKey {
		keys = append(keys, k)
	}
	return keys
}

// RefreshAll delivers fresh values to the watchers of every key, from one
// read for all of them (read gets the keys and returns a value per key).
func (ws *Watchers[K, T]) RefreshAll(read func(keys []K) (map[K]T, error)) error {
	ws.readMu.Lock()
	defer ws.readMu.Unlock()
	ws.mu.Lock()
	for k, cur := range ws.last { // kept after their last watcher left: they may have changed too
		if !cur.unwatched.IsZero() {
			delete(ws.last, k)
		}
	}
	ws.mu.Unlock()
	keys := ws.Keys()
	if len(keys) == 0 {
		return nil
	}
	values, err := read(keys)
	if err != nil {
		return err
	}
	for k, v := range values {
		if cur, changed := ws.keepLocked(k, v); changed {
			ws.deliver(k, cur)
		}
	}
	return nil
}
