package live

import (
	"context"
	"sync"

	"github.com/switchboardhq/switchboard/panics"
)

// Watchers are latest-value watchers grouped by key (a module, a user, a
// dashboard size), each fed from a read of the truth (the database).
//
// Every read is delivered under one lock with the read itself, so a watcher
// never ends with an older value delivered after a newer one: a watcher
// that starts while a refresh of its key runs gets the newer of the two
// last. A new watcher is registered before its first read, so a change
// committed meanwhile is not lost (at worst it is sent twice).
type Watchers[K comparable, T any] struct {
	// Panics recovers a panic of a watcher's goroutine (its channel then
	// closes); set it before the first Watch. Nil logs to slog.Default.
	Panics *panics.Guard

	mu     sync.Mutex
	byKey  map[K]map[*Latest[T]]struct{}
	readMu sync.Mutex
}

// Watch returns key's values: read's at once, then each one Refresh
// delivers, until ctx ends.
func (ws *Watchers[K, T]) Watch(ctx context.Context, key K, read func() (T, error)) (<-chan T, error) {
	w := NewLatest[T]()
	ws.mu.Lock()
	if ws.byKey == nil {
		ws.byKey = make(map[K]map[*Latest[T]]struct{})
	}
	if ws.byKey[key] == nil {
		ws.byKey[key] = make(map[*Latest[T]]struct{})
	}
	ws.byKey[key][w] = struct{}{}
	ws.mu.Unlock()
	forget := func() {
		ws.mu.Lock()
		delete(ws.byKey[key], w)
		if len(ws.byKey[key]) == 0 {
			delete(ws.byKey, key)
		}
		ws.mu.Unlock()
	}
	ws.readMu.Lock()
	v, err := read()
	if err == nil {
		w.Set(v)
	}
	ws.readMu.Unlock()
	if err != nil {
		forget()
		return nil, err
	}
	go w.RunGuarded(ctx, forget, ws.Panics, "live.watcher")
	return w.C(), nil
}

// Refresh reads key's value and delivers it to its watchers; without
// watchers it reads nothing.
func (ws *Watchers[K, T]) Refresh(key K, read func() (T, error)) error {
	if ws.Len(key) == 0 {
		return nil
	}
	ws.readMu.Lock()
	defer ws.readMu.Unlock()
	v, err := read()
	if err != nil {
		return err
	}
	ws.mu.Lock()
	for w := range ws.byKey[key] {
		w.Set(v)
	}
	ws.mu.Unlock()
	return nil
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
	keys := ws.Keys()
	if len(keys) == 0 {
		return nil
	}
	values, err := read(keys)
	if err != nil {
		return err
	}
	ws.mu.Lock()
	for k, v := range values {
		for w := range ws.byKey[k] {
			w.Set(v)
		}
	}
	ws.mu.Unlock()
	return nil
}
