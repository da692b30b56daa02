package accounts

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/store"
)

// endedTopic is the broker topic on which ended sessions are announced: a
// JSON array of session ids.
const endedTopic = "sessions.ended"

// Defaults of SessionsOptions.
const (
	// DefaultRecheck is how often the database is asked for revocations.
	DefaultRecheck = 2 * time.Second
	// DefaultSessionCache is how many sessions a Sessions remembers.
	DefaultSessionCache = 100_000
)

const (
	// recheckOverlap is how far back each recheck looks before the previous
	// one: a revocation is stamped with its replica's clock before it
	// commits, so a recheck must see it even when the clocks of two
	// replicas differ, or the commit took a while, by up to this much.
	recheckOverlap = 30 * time.Second
	// standingFor is how long a session found standing is believed without
	// asking the database again. Rechecks and announcements already end it
	// everywhere when it is revoked; this bounds what a missed one (a clock
	// off by more than recheckOverlap) could cost.
	standingFor = 5 * time.Minute
	// pruneEvery is how often the sessions that ended are deleted, and
	// pruneAfter how long after their end.
	pruneEvery = time.Hour
	pruneAfter = time.Hour
)

// SessionsOptions tune a Sessions. Zero values take the defaults.
type SessionsOptions struct {
	// Recheck is how often the database is asked which sessions were
	// revoked lately (through any replica, or by the token subcommand), so
	// that a replica that missed an announcement still ends them within
	// Recheck. Default DefaultRecheck.
	Recheck time.Duration
	// CacheSize bounds how many sessions are remembered (a forgotten one is
	// read from the database again when one of its tokens comes). Default
	// DefaultSessionCache.
	CacheSize int
	// Ended, if not nil, learns of sessions that ended while this process
	// runs (signed out or revoked, here or on another replica), to close
	// their WebSocket connections. It runs on the goroutine that learnt of
	// them, and must not wait.
	Ended func(ids []string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives failures to recheck or announce; nil discards them.
	Log *slog.Logger
	// Panics recovers a panic of the follower of announcements and
	// rechecks: it subscribes again after a back-off and rechecks. Nil logs
	// to slog.Default.
	Panics *panics.Guard
}

// Sessions knows which sessions stand: it checks tokens' sessions (see
// Check) at the cost of a database read only the first time a session is
// seen (and every few minutes after), records revocations and announces
// them on the broker, and learns of the others' revocations from the
// broker at once and from the database within Recheck. Start its
// background work with Start; Close ends it.
type Sessions struct {
	db     *store.DB
	broker pubsub.Broker
	opts   SessionsOptions
	cache  *sessionCache

	done      chan struct{}
	closeOnce sync.Once
	running   sync.WaitGroup
}

// NewSessions returns the sessions kept in db, announced on broker (nil:
// not announced; the others learn of revocations from the database).
func NewSessions(db *store.DB, broker pubsub.Broker, opts SessionsOptions) *Sessions {
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultSessionCache
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Sessions{db: db, broker: broker, opts: opts, cache: newSessionCache(opts.CacheSize), done: make(chan struct{})}
}

// Start follows the announcements of ended sessions and rechecks the
// database every Recheck (and prunes ended sessions hourly) until ctx
// ends or Close is called. It needs a broker.
func (s *Sessions) Start(ctx context.Context) {
	sub, err := s.broker.Subscribe(ctx, endedTopic)
	if err != nil {
		s.opts.Log.Warn("sessions: cannot follow announcements; rechecking the database meanwhile", "err", err)
		sub = nil
	}
	since := s.opts.Now().Add(-recheckOverlap)
	pruned := time.Time{}
	recheck := func() {
		now := s.opts.Now()
		ids, err := s.db.RevokedSince(ctx, since, now)
		if err != nil {
			if ctx.Err() == nil {
				s.opts.Log.Warn("sessions: recheck failed", "err", err)
			}
			return
		}
		since = now.Add(-recheckOverlap)
		s.end(ids)
		if now.Sub(pruned) >= pruneEvery {
			pruned = now
			if n, err := s.db.PruneSessions(ctx, now.Add(-pruneAfter)); err != nil {
				s.opts.Log.Warn("sessions: prune failed", "err", err)
			} else if n > 0 {
				s.opts.Log.Info("sessions: pruned ended sessions", "count", n)
			}
		}
	}
	f := pubsub.Follower{
		Broker: s.broker, Topic: endedTopic,
		Apply:  s.applyAnnouncement,
		Missed: recheck, Poll: recheck, PollInterval: s.opts.Recheck,
		Failed: func(err error) { s.opts.Log.Debug("sessions: announcements interrupted", "err", err) },
		Panics: s.opts.Panics, Where: "sessions.follower",
	}
	s.running.Go(func() { f.Run(ctx, sub, s.done) })
}

// Close stops the background work of Start and waits for it.
func (s *Sessions) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.running.Wait()
}

// Check says whether session id of user stands (see auth.Sessions): from
// memory when the session was seen lately, else from the database. A
// session revoked, past its end, unknown or of another user is
// models.Unauthenticated; a database that cannot be read,
// models.Unavailable.
func (s *Sessions) Check(ctx context.Context, id string, user int64) error {
	now := s.opts.Now()
	e, ok := s.cache.get(id, now)
	if !ok {
		rec, err := s.db.Session(ctx, id)
		switch {
		case models.ErrorCode(err) == models.NotFound:
			e = sessionEntry{ended: true}
		case err != nil:
			return models.E("check session", models.Unavailable, err, "the session cannot be checked now, try again later")
		default:
			e = sessionEntry{user: rec.UserID, end: rec.ExpiresAt, ended: rec.RevokedAt != nil}
		}
		e.checked = now
		e = s.cache.remember(id, e)
	}
	switch {
	case e.ended || !now.Before(e.end):
		return errSessionEnded
	case e.user != user:
		return models.Errorf(models.Unauthenticated, "invalid token")
	}
	return nil
}

// errSessionEnded refuses a token whose session was signed out, revoked or
// has reached its end.
var errSessionEnded = models.Errorf(models.Unauthenticated, "session ended: sign in again")

// Revoke ends session id: its tokens are refused from now on, here at
// once, on the other replicas as soon as they hear the announcement (or
// recheck the database). It reports whether the session was standing; an
// unknown id is models.NotFound.
func (s *Sessions) Revoke(ctx context.Context, id string) (bool, error) {
	revoked, err := s.db.RevokeSession(ctx, id, s.opts.Now())
	if err != nil {
		return false, err
	}
	s.ended(ctx, []string{id})
	return revoked, nil
}

// RevokeUser ends every session of user that has not reached its end, as
// Revoke does, and returns their ids (those revoked before included).
func (s *Sessions) RevokeUser(ctx context.Context, user int64) ([]string, error) {
	ids, err := s.db.RevokeUserSessions(ctx, user, s.opts.Now())
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		s.ended(ctx, ids)
	}
	return ids, nil
}

// ended applies the revocation of ids here and announces it to the others.
// A failed announcement only delays them to their next recheck.
func (s *Sessions) ended(ctx context.Context, ids []string) {
	s.opts.Log.InfoContext(ctx, "sessions ended", "sessions", ids)
	s.end(ids)
	if s.broker == nil {
		return
	}
	payload, _ := json.Marshal(ids)
	if err := s.broker.Publish(context.WithoutCancel(ctx), endedTopic, payload); err != nil {
		s.opts.Log.Warn("sessions: announcement failed; the other replicas learn of it from the database", "err", err, "sessions", len(ids))
	}
}

// applyAnnouncement applies an announcement of ended sessions; ids that
// are not session ids are ignored.
func (s *Sessions) applyAnnouncement(payload []byte) {
	var ids []string
	if err := json.Unmarshal(payload, &ids); err != nil {
		s.opts.Log.Debug("sessions: malformed announcement", "err", err)
		return
	}
	valid := ids[:0]
	for _, id := range ids {
		if models.ValidSessionID(id) {
			valid = append(valid, id)
		}
	}
	s.end(valid)
}

// end records that ids ended and tells Options.Ended of those not known
// to have ended before.
func (s *Sessions) end(ids []string) {
	if fresh := s.cache.end(ids); len(fresh) > 0 && s.opts.Ended != nil {
		s.opts.Ended(fresh)
	}
}

// sessionEntry is what a Sessions remembers of one session.
type sessionEntry struct {
	user    int64
	end     time.Time // the session's absolute end
	ended   bool      // revoked (or unknown): for good
	checked time.Time // when the database said so
}

// sessionCache is the bounded memory of a Sessions: at most max entries;
// when full, an arbitrary 1/64 of them is forgotten (a forgotten session
// is read from the database again, so forgetting is always safe). An
// ended entry is never replaced by a standing one.
type sessionCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]sessionEntry
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{max: max, entries: make(map[string]sessionEntry)}
}

// get returns the entry of id, unless there is none or it says the session
// stands and is older than standingFor at now.
func (c *sessionCache) get(id string, now time.Time) (sessionEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if ok && !e.ended && now.Sub(e.checked) >= standingFor {
		return e, false
	}
	return e, ok
}

// remember keeps e as id's entry and returns the entry kept: an ended one
// known already wins over e (the session was revoked while e was read).
func (c *sessionCache) remember(id string, e sessionEntry) sessionEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[id]; ok && old.ended {
		return old
	}
	if _, ok := c.entries[id]; !ok {
		c.makeRoom()
	}
	c.entries[id] = e
	return e
}

// end marks ids ended and returns those that were not known to have ended.
func (c *sessionCache) end(ids []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var fresh []string
	for _, id := range ids {
		old, ok := c.entries[id]
		if ok && old.ended {
			continue
		}
		if !ok {
			c.makeRoom()
		}
		old.ended = true
		c.entries[id] = old
		fresh = append(fresh, id)
	}
	return fresh
}

// makeRoom forgets an arbitrary 1/64 of the entries (at least one) when
// the cache is full. The caller holds mu.
func (c *sessionCache) makeRoom() {
	if len(c.entries) < c.max {
		return
	}
	drop := max(1, c.max/64)
	for id := range c.entries {
		delete(c.entries, id)
		if drop--; drop == 0 {
			return
		}
	}
}
