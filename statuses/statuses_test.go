package statuses_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/live/livetest"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/statuses"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
	"github.com/switchboardhq/switchboard/stream"
)

// TestMain fails the package when a test leaves goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tests run inside synctest bubbles, database included: time is
// virtual (rate windows and stream polls take no real time), and
// synctest.Wait makes "nothing arrives" a certainty.

// pollInterval is how often the status stream checks the database for
// statuses no broker announced.
const pollInterval = time.Second

// env is the status service as app wires it, over a fresh SQLite database
// and the in-process broker behind an outage switch.
type env struct {
	db     *store.DB
	broker *pubsubtest.Outage
	svc    *statuses.Service
	ada    *models.User
}

// newEnv starts a service with opts (the stream's poll interval set to
// pollInterval); all of it is closed when the test ends.
func newEnv(t *testing.T, opts statuses.Options) *env {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	broker := pubsubtest.NewOutage(mempubsub.New(0))
	t.Cleanup(func() { assert.NoError(t, broker.Close()) })
	return newEnvOn(t, db, broker, opts)
}

// newEnvOn is newEnv over db and broker.
func newEnvOn(t *testing.T, db *store.DB, broker pubsub.Broker, opts statuses.Options) *env {
	t.Helper()
	opts.Stream = stream.Options{PollInterval: pollInterval}
	svc := statuses.New(db, broker, opts)
	t.Cleanup(svc.Close)
	ada, err := db.CreateUser(t.Context(), "ada")
	require.NoError(t, err)
	e := &env{db: db, svc: svc, ada: ada}
	e.broker, _ = broker.(*pubsubtest.Outage)
	return e
}

// subscribe subscribes to the feed from now on until the test ends.
func (e *env) subscribe(t *testing.T) <-chan *models.Status {
	t.Helper()
	c, err := e.svc.Subscribe(t.Context(), nil)
	require.NoError(t, err)
	return c
}

// stored returns the texts of the feed, newest first.
func (e *env) stored(t *testing.T) []string {
	t.Helper()
	page, err := e.svc.Before(t.Context(), 0, 100)
	require.NoError(t, err)
	return texts(page)
}

func texts(ss []*models.Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Text
	}
	return out
}

func TestPost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, statuses.Options{})
		live := e.subscribe(t)
		st, err := e.svc.Post(t.Context(), e.ada, "  hello \n", "")
		require.NoError(t, err)
		assert.Equal(t, int64(1), st.ID)
		assert.Equal(t, "hello", st.Text, "trimmed")
		assert.Equal(t, e.ada, st.Author)
		assert.Equal(t, time.Now().UTC(), st.CreatedAt)
		assert.Equal(t, []string{"hello"}, texts(livetest.Received(t, live)))

		_, err = e.svc.Post(t.Context(), e.ada, "again", "")
		require.NoError(t, err)
		assert.Equal(t, []string{"again"}, texts(livetest.Received(t, live)))
		assert.Equal(t, []string{"again", "hello"}, e.stored(t), "newest first")
		page, err := e.svc.Before(t.Context(), 2, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"hello"}, texts(page), "before an id")

		after := int64(0)
		replay, err := e.svc.Subscribe(t.Context(), &after)
		require.NoError(t, err)
		assert.Equal(t, []string{"hello", "again"}, texts(livetest.Received(t, replay)), "replayed after 0, in order")
	})
}

// TestPostValidates: invalid text is BAD_USER_INPUT and neither stored nor
// announced.
func TestPostValidates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, statuses.Options{})
		live := e.subscribe(t)
		tests := []struct{ name, text, errPart string }{
			{name: "empty", text: "", errPart: "must not be empty"},
			{name: "blank", text: " \n\t", errPart: "must not be empty"},
			{name: "too long", text: strings.Repeat("ü", models.MaxStatusLength+1), errPart: "the limit is 500"},
			{name: "invalid UTF-8", text: "a\xffb", errPart: "UTF-8"},
		}
		for _, tt := range tests { // no t.Run in a bubble
			st, err := e.svc.Post(t.Context(), e.ada, tt.text, "")
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: %v", tt.name, err)
			assert.ErrorContains(t, err, tt.errPart, tt.name)
			assert.Nil(t, st, tt.name)
		}
		assert.Empty(t, e.stored(t), "nothing stored")
		assert.Empty(t, livetest.Received(t, live), "nothing announced")
	})
}

// TestPostRateLimited: a post the author's limit refuses is RATE_LIMITED
// and neither stored nor announced; other authors have their own limit,
// and the bucket refills.
func TestPostRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limit := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 1, Burst: 2}, nil)
		e := newEnv(t, statuses.Options{RateLimit: limit})
		bob, err := e.db.CreateUser(t.Context(), "bob")
		require.NoError(t, err)
		live := e.subscribe(t)
		for _, text := range []string{"one", "two"} {
			_, err := e.svc.Post(t.Context(), e.ada, text, "")
			require.NoError(t, err)
		}
		st, err := e.svc.Post(t.Context(), e.ada, "three", "")
		assert.Nil(t, st)
		assert.Equal(t, models.RateLimited, models.ErrorCode(err))
		assert.EqualError(t, err, "too many statuses; slow down")
		assert.Equal(t, uint64(1), limit.Refused())
		_, err = e.svc.Post(t.Context(), bob, "bob's", "")
		require.NoError(t, err, "another author's limit")
		assert.Equal(t, []string{"bob's", "two", "one"}, e.stored(t), "the refused one was not stored")
		assert.Equal(t, []string{"one", "two", "bob's"}, texts(livetest.Received(t, live)), "nor announced")

		time.Sleep(time.Second)
		_, err = e.svc.Post(t.Context(), e.ada, "later", "")
		require.NoError(t, err, "the bucket refilled")
	})
}

// commitChecker is a broker that records, for each status it is asked to
// announce, whether the status was already committed at that moment.
type commitChecker struct {
	pubsub.Broker
	db *store.DB

	mu        sync.Mutex
	committed map[string]bool // status text → committed before it was announced
}

func (c *commitChecker) Publish(ctx context.Context, topic string, payload []byte) error {
	var st models.Status
	if err := json.Unmarshal(payload, &st); err == nil && topic == models.StatusStream {
		page, err := c.db.StatusesBefore(ctx, st.ID+1, 1)
		c.mu.Lock()
		c.committed[st.Text] = err == nil && len(page) == 1 && page[0].ID == st.ID
		c.mu.Unlock()
	}
	return c.Broker.Publish(ctx, topic, payload)
}

// TestPostPublishesAfterCommit: a status is announced once it is in the
// database, never before.
func TestPostPublishesAfterCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := storetest.Open(t, store.SQLite)
		mem := mempubsub.New(0)
		t.Cleanup(func() { assert.NoError(t, mem.Close()) })
		broker := &commitChecker{Broker: mem, db: db, committed: map[string]bool{}}
		e := newEnvOn(t, db, broker, statuses.Options{})
		live := e.subscribe(t)
		for _, text := range []string{"one", "two"} {
			_, err := e.svc.Post(t.Context(), e.ada, text, "")
			require.NoError(t, err)
		}
		assert.Equal(t, []string{"one", "two"}, texts(livetest.Received(t, live)))
		broker.mu.Lock()
		defer broker.mu.Unlock()
		assert.Equal(t, map[string]bool{"one": true, "two": true}, broker.committed, "each status was committed when announced")
	})
}

// TestPostWhileTheBrokerIsDown: a post whose announcement fails succeeds
// all the same (it is committed), and subscribers get it from the
// database at the stream's next poll.
func TestPostWhileTheBrokerIsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, statuses.Options{})
		live := e.subscribe(t)
		synctest.Wait()
		e.broker.SetDown(true)
		st, err := e.svc.Post(t.Context(), e.ada, "during the outage", "")
		require.NoError(t, err)
		assert.Equal(t, int64(1), st.ID)
		assert.Equal(t, []string{"during the outage"}, e.stored(t), "committed")
		time.Sleep(pollInterval)
		assert.Equal(t, []string{"during the outage"}, texts(livetest.Received(t, live)), "delivered from the database")
		e.broker.SetDown(false)
	})
}

// TestPostIdempotent: a retry with the key of a post returns the first
// status and stores and announces nothing, without counting against the
// rate limit; the key with another text is BAD_USER_INPUT; another user's
// same key is theirs; after the window the key is new again.
func TestPostIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limit := ratelimit.NewKeyed(ratelimit.Limit{PerSecond: 0.001, Burst: 3}, nil)
		var later time.Duration // how far the service's clock is ahead
		clock := func() time.Time { return time.Now().Add(later) }
		e := newEnv(t, statuses.Options{RateLimit: limit, Now: clock})
		bob, err := e.db.CreateUser(t.Context(), "bob")
		require.NoError(t, err)
		live := e.subscribe(t)

		first, err := e.svc.Post(t.Context(), e.ada, "hello", "key-1")
		require.NoError(t, err)
		assert.Equal(t, []string{"hello"}, texts(livetest.Received(t, live)))
		for range 3 { // more retries than the rate limit's burst
			again, err := e.svc.Post(t.Context(), e.ada, " hello\n", "key-1")
			require.NoError(t, err, "the same text, trimmed")
			assert.Equal(t, first.ID, again.ID)
			assert.Equal(t, first.Text, again.Text)
			assert.Equal(t, first.CreatedAt, again.CreatedAt)
			assert.Equal(t, first.Author.ID, again.Author.ID)
		}
		assert.Equal(t, []string{"hello"}, e.stored(t), "stored once")
		assert.Empty(t, livetest.Received(t, live), "announced once")
		assert.Zero(t, limit.Refused(), "replays are not rate limited")

		_, err = e.svc.Post(t.Context(), e.ada, "hello again", "key-1")
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%v", err)
		assert.ErrorContains(t, err, `idempotencyKey "key-1" was used for another postStatus with other arguments`)

		theirs, err := e.svc.Post(t.Context(), bob, "hello", "key-1")
		require.NoError(t, err, "bob's key-1 is not ada's")
		assert.NotEqual(t, first.ID, theirs.ID)

		later = models.IdempotencyWindow + time.Millisecond
		fresh, err := e.svc.Post(t.Context(), e.ada, "hello", "key-1")
		require.NoError(t, err)
		assert.NotEqual(t, first.ID, fresh.ID, "a new status once the window is over")
		assert.Equal(t, []string{"hello", "hello", "hello"}, e.stored(t))
		assert.Len(t, livetest.Received(t, live), 2, "bob's and the new one announced")
	})
}
