package stream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
	"github.com/switchboardhq/switchboard/stream"
)

// TestMain fails the package when a test leaves goroutines behind, once every
// test and its cleanups (closing feeds, brokers and stores) have run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait for an event: generous, because a failure shows
// up as a timeout with a message rather than a hung test.
const waitFor = 10 * time.Second

// fastPoll makes hubs find unannounced events quickly.
const fastPoll = 50 * time.Millisecond

// env is a status feed wired as in server.go: the real store, the in-process
// broker, and a Feed over both.
type env struct {
	db     *store.DB
	broker *mempubsub.Broker
	feed   *stream.Feed[*models.Status]
	author *models.User
}

// newEnv opens a fresh database of dialect and a feed over it with opts; all
// of it is closed when the test ends, the feed first.
func newEnv(tb testing.TB, dialect store.Dialect, opts stream.Options) *env {
	tb.Helper()
	broker := mempubsub.New(0)
	e := newEnvOn(tb, dialect, broker, opts)
	e.broker = broker
	return e
}

// newEnvOn is newEnv with the feed on broker, which it closes when the test
// ends; env.broker stays nil.
func newEnvOn(tb testing.TB, dialect store.Dialect, broker pubsub.Broker, opts stream.Options) *env {
	tb.Helper()
	db := storetest.Open(tb, dialect)
	tb.Cleanup(func() { assert.NoError(tb, broker.Close()) })
	feed := stream.New(db.StatusLog(), broker, func(s *models.Status) int64 { return s.ID }, opts)
	tb.Cleanup(func() { closeFeed(tb, feed) })
	author, err := db.CreateUser(context.Background(), "ada")
	require.NoError(tb, err)
	return &env{db: db, feed: feed, author: author}
}

// closeFeed closes feed, failing the test if that takes too long.
func closeFeed(tb testing.TB, feed *stream.Feed[*models.Status]) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- feed.Close() }()
	select {
	case err := <-done:
		assert.NoError(tb, err)
	case <-time.After(waitFor):
		tb.Errorf("Feed.Close did not return within %v", waitFor)
	}
}

// forEachBackend runs test once per database kind, in subtests named after
// the dialect. They run one after the other: some of them count goroutines.
func forEachBackend(t *testing.T, test func(t *testing.T, dialect store.Dialect)) {
	t.Helper()
	for _, dialect := range storetest.Backends {
		t.Run(string(dialect), func(t *testing.T) { test(t, dialect) })
	}
}

// commit stores a status without announcing it.
func (e *env) commit(tb testing.TB, text string) *models.Status {
	tb.Helper()
	st, _, err := e.db.CreateStatus(context.Background(), e.author, text, time.Now(), nil)
	require.NoError(tb, err)
	return st
}

// publish announces an already committed status.
func (e *env) publish(tb testing.TB, st *models.Status) {
	tb.Helper()
	require.NoError(tb, e.feed.Publish(context.Background(), models.StatusStream, st))
}

// post commits and announces a status, as the statuses service does.
func (e *env) post(tb testing.TB, text string) *models.Status {
	tb.Helper()
	st := e.commit(tb, text)
	e.publish(tb, st)
	return st
}

// postN posts n statuses and returns them.
func (e *env) postN(tb testing.TB, n int) []*models.Status {
	tb.Helper()
	out := make([]*models.Status, n)
	for i := range out {
		out[i] = e.post(tb, fmt.Sprintf("status %d", i+1))
	}
	return out
}

// subscribe subscribes to the status stream until the test ends.
func (e *env) subscribe(tb testing.TB, after *int64) <-chan *models.Status {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	c, err := e.feed.Subscribe(ctx, models.StatusStream, after)
	require.NoError(tb, err)
	return c
}

// receive reads n events from c, failing if they do not come in time or the
// channel closes first.
func receive(tb testing.TB, c <-chan *models.Status, n int) []*models.Status {
	tb.Helper()
	out := make([]*models.Status, 0, n)
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case st, ok := <-c:
			require.True(tb, ok, "channel closed after %d of %d events: %v", len(out), n, ids(out))
			out = append(out, st)
		case <-deadline.C:
			require.FailNow(tb, "timed out", "got %d of %d events after %v: %v", len(out), n, waitFor, ids(out))
		}
	}
	return out
}

// requireClosed drains c until it is closed and returns what it drained.
func requireClosed(tb testing.TB, c <-chan *models.Status) []*models.Status {
	tb.Helper()
	var drained []*models.Status
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		select {
		case st, ok := <-c:
			if !ok {
				return drained
			}
			drained = append(drained, st)
		case <-deadline.C:
			require.FailNow(tb, "channel not closed", "still open after %v (drained %v)", waitFor, ids(drained))
		}
	}
}

// requireNext checks that nothing is pending on the channels: it posts a
// marker status and expects exactly that one next on each. It is how these
// tests see "exactly once" without sleeping.
func (e *env) requireNext(tb testing.TB, cs ...<-chan *models.Status) {
	tb.Helper()
	marker := e.post(tb, "marker")
	for i, c := range cs {
		got := receive(tb, c, 1)
		require.Equal(tb, marker.ID, got[0].ID, "subscriber %d: an unexpected event came before the marker", i)
	}
}

func ids(statuses []*models.Status) []int64 {
	out := make([]int64, len(statuses))
	for i, s := range statuses {
		out[i] = s.ID
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// assertSameStatuses checks that delivered statuses carry what was posted:
// the API fields of a status and of its author.
func assertSameStatuses(t *testing.T, want, got []*models.Status) {
	t.Helper()
	require.Equal(t, ids(want), ids(got))
	for i := range want {
		w, g := want[i], got[i]
		assert.Equal(t, w.Text, g.Text, "status %d", w.ID)
		assert.True(t, w.CreatedAt.Equal(g.CreatedAt), "status %d: CreatedAt %v, delivered %v", w.ID, w.CreatedAt, g.CreatedAt)
		assert.Equal(t, w.CreatedAt.Format(time.RFC3339Nano), g.CreatedAt.Format(time.RFC3339Nano), "status %d", w.ID)
		if assert.NotNil(t, g.Author, "status %d has no author", w.ID) {
			assert.Equal(t, w.Author.ID, g.Author.ID, "status %d", w.ID)
			assert.Equal(t, w.Author.Name, g.Author.Name, "status %d", w.ID)
		}
	}
}

func TestLive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
		e.postN(t, 2) // history a live subscriber does not get
		c := e.subscribe(t, nil)
		posted := e.postN(t, 3)
		assertSameStatuses(t, posted, receive(t, c, 3))
		e.requireNext(t, c)
	})
}

func TestResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		tests := []struct {
			name  string
			after int64
			want  []int // indexes of the five posted statuses
		}{
			{name: "from the start", after: 0, want: []int{0, 1, 2, 3, 4}},
			{name: "from the middle", after: 2, want: []int{2, 3, 4}},
			{name: "from the last", after: 5, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
				history := e.postN(t, 5)
				var want []*models.Status
				for _, i := range tt.want {
					want = append(want, history[i])
				}
				c := e.subscribe(t, &tt.after)
				assertSameStatuses(t, want, receive(t, c, len(want)))
				e.requireNext(t, c) // live after the replay, nothing repeated
			})
		}
	})
}

// TestResumeWhileOthersListen resumes while the stream's hub already runs
// for a live subscriber, so replay and live delivery meet.
func TestResumeWhileOthersListen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
		live := e.subscribe(t, nil)
		history := e.postN(t, 5)
		assertSameStatuses(t, history, receive(t, live, 5))
		resumed := e.subscribe(t, ptr(int64(2)))
		assertSameStatuses(t, history[2:], receive(t, resumed, 3))
		more := e.postN(t, 2)
		assertSameStatuses(t, more, receive(t, live, 2))
		assertSameStatuses(t, more, receive(t, resumed, 2))
		e.requireNext(t, live, resumed)
	})
}

func TestMissingAnnouncement(t *testing.T) {
	tests := []struct {
		name string
		// run commits (and maybe announces) statuses; it returns how many
		// the subscriber must receive.
		run func(t *testing.T, e *env) int
	}{
		{
			name: "the poll finds it",
			run: func(t *testing.T, e *env) int {
				e.commit(t, "never announced")
				return 1
			},
		},
		{
			name: "the next announcement fills it",
			run: func(t *testing.T, e *env) int {
				e.commit(t, "never announced")
				e.post(t, "announced")
				return 2
			},
		},
		{
			name: "several in a row, then an announcement",
			run: func(t *testing.T, e *env) int {
				for i := range 3 {
					e.commit(t, fmt.Sprintf("never announced %d", i))
				}
				e.post(t, "announced")
				e.commit(t, "never announced either")
				return 5
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.SQLite, stream.Options{PollInterval: fastPoll})
			c := e.subscribe(t, nil)
			n := tt.run(t, e)
			got := receive(t, c, n)
			require.Equal(t, seq(1, int64(n)), ids(got))
			e.requireNext(t, c)
		})
	}
}

func TestOutOfOrderAnnouncements(t *testing.T) {
	tests := []struct {
		name     string
		announce []int // indexes of the committed statuses, in announcement order
	}{
		{name: "last first", announce: []int{2, 0, 1}},
		{name: "reversed", announce: []int{2, 1, 0}},
		{name: "middle first", announce: []int{1, 2, 0}},
		{name: "only the last", announce: []int{2}},
		{name: "duplicates", announce: []int{0, 0, 2, 1, 2}},
	}
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// No polling: only announcements bring events, so the feed
				// must read the unannounced ones from the database itself.
				e := newEnv(t, dialect, stream.Options{PollInterval: time.Hour})
				c := e.subscribe(t, nil)
				committed := []*models.Status{e.commit(t, "one"), e.commit(t, "two"), e.commit(t, "three")}
				for _, i := range tt.announce {
					e.publish(t, committed[i])
				}
				assertSameStatuses(t, committed, receive(t, c, 3))
				e.requireNext(t, c)
			})
		}
	})
}

// TestUndecodableAnnouncement checks that a bad message on the topic costs
// nothing: the hub reads the database instead.
func TestUndecodableAnnouncement(t *testing.T) {
	tests := []struct {
		name    string
		payload string
	}{
		{name: "not JSON", payload: "{not json"},
		{name: "wrong field type", payload: `{"id":"one"}`},
		{name: "null", payload: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, store.SQLite, stream.Options{PollInterval: time.Hour})
			c := e.subscribe(t, nil)
			st := e.commit(t, "announced badly")
			require.NoError(t, e.broker.Publish(t.Context(), models.StatusStream, []byte(tt.payload)))
			assertSameStatuses(t, []*models.Status{st}, receive(t, c, 1))
			e.requireNext(t, c)
		})
	}
}

// TestBrokerOutage checks that a closed broker loses nothing: Publish fails,
// and subscribers get the events from the database at the next poll.
func TestBrokerOutage(t *testing.T) {
	e := newEnv(t, store.SQLite, stream.Options{PollInterval: fastPoll})
	c := e.subscribe(t, nil)
	first := e.post(t, "before the outage")
	require.NoError(t, e.broker.Close())

	var during []*models.Status
	for i := range 3 {
		st := e.commit(t, fmt.Sprintf("during the outage %d", i))
		err := e.feed.Publish(t.Context(), models.StatusStream, st)
		require.Error(t, err, "publishing on a closed broker")
		during = append(during, st)
	}
	assertSameStatuses(t, append([]*models.Status{first}, during...), receive(t, c, 4))
	next := e.commit(t, "still during the outage")
	assertSameStatuses(t, []*models.Status{next}, receive(t, c, 1)) // and nothing twice
}

// TestBrokerComesBack checks that a hub whose broker subscription dropped
// takes it again once the broker is back and reads from the database what
// it missed meanwhile, without waiting for a poll.
func TestBrokerComesBack(t *testing.T) {
	broker := pubsubtest.NewOutage(mempubsub.New(0))
	e := newEnvOn(t, store.SQLite, broker, stream.Options{PollInterval: time.Hour})
	c := e.subscribe(t, nil)
	first := e.post(t, "before the outage")
	assertSameStatuses(t, []*models.Status{first}, receive(t, c, 1))

	broker.SetDown(true)
	var during []*models.Status
	for i := range 3 {
		st := e.commit(t, fmt.Sprintf("during the outage %d", i))
		require.Error(t, e.feed.Publish(t.Context(), models.StatusStream, st))
		during = append(during, st)
	}
	broker.SetDown(false)
	assertSameStatuses(t, during, receive(t, c, 3))
	after := e.post(t, "after the outage")
	assertSameStatuses(t, []*models.Status{after}, receive(t, c, 1))
}

// TestTwoProcesses runs two feeds on one database, as two replicas do:
// with a shared broker an event posted on one reaches subscribers of the
// other at once; without one, the other's poll finds it.
func TestTwoProcesses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		tests := []struct {
			name         string
			sharedBroker bool
		}{
			{name: "shared broker", sharedBroker: true},
			{name: "separate brokers", sharedBroker: false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := storetest.URL(t, dialect)
				replica := func(broker *mempubsub.Broker) *env {
					db, err := store.Open(context.Background(), url, store.Options{})
					require.NoError(t, err)
					t.Cleanup(func() { assert.NoError(t, db.Close()) })
					require.NoError(t, db.Migrate(context.Background()))
					feed := stream.New(db.StatusLog(), broker, func(s *models.Status) int64 { return s.ID }, stream.Options{PollInterval: fastPoll})
					t.Cleanup(func() { closeFeed(t, feed) })
					return &env{db: db, broker: broker, feed: feed}
				}
				brokerA := mempubsub.New(0)
				t.Cleanup(func() { assert.NoError(t, brokerA.Close()) })
				brokerB := brokerA
				if !tt.sharedBroker {
					brokerB = mempubsub.New(0)
					t.Cleanup(func() { assert.NoError(t, brokerB.Close()) })
				}
				a, b := replica(brokerA), replica(brokerB)
				author, err := a.db.CreateUser(t.Context(), "ada")
				require.NoError(t, err)
				a.author, b.author = author, author

				onA, onB := a.subscribe(t, nil), b.subscribe(t, nil)
				var posted []*models.Status
				for i := range 6 {
					poster := []*env{a, b}[i%2]
					posted = append(posted, poster.post(t, fmt.Sprintf("from replica %d", i%2)))
				}
				assertSameStatuses(t, posted, receive(t, onA, len(posted)))
				assertSameStatuses(t, posted, receive(t, onB, len(posted)))
				a.requireNext(t, onA, onB)
				b.requireNext(t, onA, onB)
			})
		}
	})
}

// flakySource is the store's status log with an outage switch: while down,
// reading events fails.
type flakySource struct {
	store.StatusLog
	down     atomic.Bool
	failures chan struct{} // one per refused read, if there is room
}

func (s *flakySource) After(ctx context.Context, stream string, after int64, limit int) ([]*models.Status, error) {
	if s.down.Load() {
		select {
		case s.failures <- struct{}{}:
		default:
		}
		return nil, errors.New("database unavailable (test outage)")
	}
	return s.StatusLog.After(ctx, stream, after, limit)
}

// TestDatabaseOutage checks that failing reads delay events, never lose
// them: replay retries, and the hub fills in once reads work again.
func TestDatabaseOutage(t *testing.T) {
	e := newEnv(t, store.SQLite, stream.Options{PollInterval: fastPoll})
	src := &flakySource{StatusLog: e.db.StatusLog(), failures: make(chan struct{}, 100)}
	feed := stream.New[*models.Status](src, e.broker, func(s *models.Status) int64 { return s.ID }, stream.Options{PollInterval: fastPoll})
	t.Cleanup(func() { closeFeed(t, feed) })
	e.feed = feed
	history := e.postN(t, 3)

	live := e.subscribe(t, nil)
	src.down.Store(true)
	resumed := e.subscribe(t, ptr(int64(0)))
	// Unannounced, so the hub has to read it.
	unannounced := e.commit(t, "during the outage")
	for range 3 { // the replay and the hub's fill keep failing meanwhile
		select {
		case <-src.failures:
		case <-time.After(waitFor):
			require.FailNow(t, "no read was attempted during the outage")
		}
	}
	src.down.Store(false)

	assertSameStatuses(t, []*models.Status{unannounced}, receive(t, live, 1))
	assertSameStatuses(t, append(history, unannounced), receive(t, resumed, 4))
	e.requireNext(t, live, resumed)
}

func TestSlowSubscriber(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		const n = 100
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll, Buffer: 4})
		slow := e.subscribe(t, nil)
		fast := e.subscribe(t, nil)

		fastGot := make(chan []*models.Status, 1)
		go func() {
			var got []*models.Status
			deadline := time.After(waitFor)
			for len(got) < n {
				select {
				case st, ok := <-fast:
					if !ok {
						fastGot <- got
						return
					}
					got = append(got, st)
				case <-deadline:
					fastGot <- got
					return
				}
			}
			fastGot <- got
		}()

		// Nobody reads slow meanwhile: if anything on the publishing path
		// waited for it, this would never finish.
		posted := make(chan []*models.Status, 1)
		postErr := make(chan error, 1)
		go func() {
			var out []*models.Status
			for i := range n {
				st, _, err := e.db.CreateStatus(context.Background(), e.author, fmt.Sprintf("status %d", i+1), time.Now(), nil)
				if err == nil {
					err = e.feed.Publish(context.Background(), models.StatusStream, st)
				}
				if err != nil {
					postErr <- err
					return
				}
				out = append(out, st)
			}
			posted <- out
		}()
		var want []*models.Status
		select {
		case want = <-posted:
		case err := <-postErr:
			require.NoError(t, err)
		case <-time.After(waitFor):
			require.FailNow(t, "posting blocked", "%d posts did not finish in %v while a subscriber was not reading", n, waitFor)
		}

		assertSameStatuses(t, want, <-fastGot)
		assertSameStatuses(t, want, receive(t, slow, n))
		e.requireNext(t, slow, fast)
	})
}

func TestCursorErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		tests := []struct {
			name  string
			posts int // the stream's head when subscribing
			after int64
		}{
			{name: "negative", posts: 0, after: -1},
			{name: "very negative", posts: 3, after: -1 << 40},
			{name: "beyond an empty stream", posts: 0, after: 1},
			{name: "one beyond the head", posts: 3, after: 4},
			{name: "far beyond the head", posts: 3, after: 1 << 40},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
				e.postN(t, tt.posts)
				c, err := e.feed.Subscribe(t.Context(), models.StatusStream, &tt.after)
				require.Error(t, err)
				assert.Nil(t, c)
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "error %q", err)

				// A refused subscription leaves the stream usable.
				live := e.subscribe(t, nil)
				e.requireNext(t, live)
			})
		}
		t.Run("while a hub runs", func(t *testing.T) {
			e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
			live := e.subscribe(t, nil)
			e.postN(t, 2)
			receive(t, live, 2)
			_, err := e.feed.Subscribe(t.Context(), models.StatusStream, ptr(int64(3)))
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "error %q", err)
			e.requireNext(t, live) // the refused subscription did not disturb the hub
		})
	})
}

// dbGoroutines are the goroutines of open database connections, which live
// as long as the store.
var dbGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"),
	goleak.IgnoreAnyFunction("database/sql.(*DB).connectionCleaner"),
	goleak.IgnoreAnyFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"),
}

// noLeaksSince returns a check that every goroutine started after this call,
// apart from the store's, has ended.
func noLeaksSince(t *testing.T) func() {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, dbGoroutines...)
	return func() {
		t.Helper()
		goleak.VerifyNone(t, opts...)
	}
}

func TestCancelClosesChannel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		tests := []struct {
			name string
			// before cancelling, with the subscription's channel
			run func(t *testing.T, e *env, c <-chan *models.Status)
		}{
			{name: "idle", run: func(*testing.T, *env, <-chan *models.Status) {}},
			{
				name: "after receiving",
				run: func(t *testing.T, e *env, c <-chan *models.Status) {
					e.postN(t, 2)
					receive(t, c, 2)
				},
			},
			{
				// The subscription is blocked handing over an event nobody
				// reads.
				name: "with events pending",
				run:  func(t *testing.T, e *env, c <-chan *models.Status) { e.postN(t, 3) },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
				e.postN(t, 2) // replayed below: opens the database connections
				verify := noLeaksSince(t)

				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				c, err := e.feed.Subscribe(ctx, models.StatusStream, ptr(int64(0)))
				require.NoError(t, err)
				receive(t, c, 2)
				tt.run(t, e, c)
				cancel()
				requireClosed(t, c)
				verify() // the subscription and the stream's hub are gone
			})
		}
	})
}

func TestCloseEndsSubscriptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
		e.postN(t, 3)
		verify := noLeaksSince(t)
		subs := []<-chan *models.Status{e.subscribe(t, nil), e.subscribe(t, ptr(int64(0))), e.subscribe(t, ptr(int64(3)))}
		receive(t, subs[1], 3)
		e.requireNext(t, subs...)

		require.NoError(t, e.feed.Close())
		for i, c := range subs {
			drained := requireClosed(t, c)
			assert.Empty(t, drained, "subscriber %d", i)
		}
		_, err := e.feed.Subscribe(t.Context(), models.StatusStream, nil)
		assert.ErrorIs(t, err, stream.ErrClosed)
		require.NoError(t, e.feed.Close(), "second Close")
		verify()
	})
}

func TestSubscribeCanceledContext(t *testing.T) {
	e := newEnv(t, store.SQLite, stream.Options{PollInterval: fastPoll})
	verify := noLeaksSince(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c, err := e.feed.Subscribe(ctx, models.StatusStream, nil)
	if err != nil {
		assert.ErrorIs(t, err, context.Canceled)
	} else {
		requireClosed(t, c)
	}
	verify()
}

// TestResubscribeProperty is what a flaky client does to the feed: while
// several posters write concurrently (and so announce out of order), it
// drops its subscription after a few events and resumes from the last one it
// saw. In the end it must have seen every status once, in order.
func TestResubscribeProperty(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		const posters, perPoster, total = 4, 50, 4 * 50
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, seed))
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll, Buffer: 8})
		verify := noLeaksSince(t)

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for p := range posters {
			wg.Go(func() {
				for i := range perPoster {
					st, _, err := e.db.CreateStatus(ctx, e.author, fmt.Sprintf("poster %d post %d", p, i), time.Now(), nil)
					if err != nil {
						assert.NoError(t, err, "poster %d post %d", p, i)
						return
					}
					// Announcements may fail only if the feed is gone.
					_ = e.feed.Publish(ctx, models.StatusStream, st)
				}
			})
		}
		defer wg.Wait()

		var seen []int64
		last := int64(0)
		subscriptions := 0
		for last < total {
			subCtx, subCancel := context.WithCancel(ctx)
			c, err := e.feed.Subscribe(subCtx, models.StatusStream, ptr(last))
			if err != nil {
				subCancel()
				require.NoError(t, err, "resubscribe after %d", last)
			}
			subscriptions++
			want := 1 + rng.IntN(5)
			for got := 0; got < want && last < total; {
				select {
				case st, ok := <-c:
					if !ok {
						subCancel()
						require.FailNow(t, "subscription closed", "after %d", last)
					}
					seen = append(seen, st.ID)
					last = st.ID
					got++
				case <-ctx.Done():
					subCancel()
					require.FailNow(t, "timed out", "after 30s the subscriber has seen %d of %d events (last %d, %d subscriptions): %v",
						len(seen), total, last, subscriptions, seen)
				}
			}
			subCancel()
			// Whatever arrives before the channel closes was delivered too.
			for st := range c {
				seen = append(seen, st.ID)
				last = st.ID
			}
		}
		wg.Wait()
		require.Equal(t, seq(1, total), seen, "after %d subscriptions", subscriptions)
		t.Logf("%d subscriptions", subscriptions)
		verify()
	})
}

// TestPartReplay: a subscription to a part of a stream with its own reader
// replays through that reader only, page by page, resumes exactly after the
// part's last event even when the stream's newer events are others', and
// then continues live with the part's events without reading again.
func TestPartReplay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll, PageSize: 2})
		bob, err := e.db.CreateUser(context.Background(), "bob")
		require.NoError(t, err)
		by := func(u *models.User, text string) *models.Status {
			st, _, err := e.db.CreateStatus(context.Background(), u, text, time.Now(), nil)
			require.NoError(t, err)
			e.publish(t, st)
			return st
		}
		var adas []*models.Status
		for i := range 7 {
			adas = append(adas, by(e.author, fmt.Sprint("ada ", i)))
			by(bob, fmt.Sprint("bob ", i)) // the stream ends with bob's
		}
		mine := func(st *models.Status) bool { return st.AuthorID == e.author.ID }
		var reads atomic.Int32
		part := stream.Part[*models.Status]{
			Keep: mine,
			// ada's statuses only, as an index would read them, and how far.
			After: func(ctx context.Context, after int64, limit int) ([]*models.Status, int64, error) {
				reads.Add(1)
				head, err := e.db.Head(ctx, models.StatusStream)
				if err != nil {
					return nil, 0, err
				}
				all, err := e.db.StatusLog().After(ctx, models.StatusStream, after, 1000)
				var out []*models.Status
				for _, st := range all {
					if mine(st) && len(out) < limit {
						out = append(out, st)
					}
				}
				through := head
				if len(out) == limit {
					through = out[limit-1].ID
				}
				return out, through, err
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		c, err := e.feed.SubscribePart(ctx, models.StatusStream, ptr(adas[1].ID), part)
		require.NoError(t, err)
		assert.Equal(t, ids(adas[2:]), ids(receive(t, c, 5)), "ada's after her second, oldest first")
		live := by(e.author, "ada, live")
		by(bob, "bob, live")
		again := by(e.author, "ada, live again")
		assert.Equal(t, []int64{live.ID, again.ID}, ids(receive(t, c, 2)))
		assert.Equal(t, int32(3), reads.Load(), "five of hers in pages of two, then none while live")
	})
}

// TestResumersShareReads resumes many subscribers at the same cursor at
// once, as the clients of a restarted server do: they share their
// database reads (one page for all, then the hub's recent events), so the
// statements they cost do not grow with their number; and each gets
// exactly the events after its cursor, then the live ones.
func TestResumersShareReads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: time.Hour}) // no poll statements during the count
		history := e.postN(t, 30)
		const resumers = 60
		count := func(name string, after int64, want []*models.Status) {
			t.Helper()
			before := e.db.Statements()
			cs := make([]<-chan *models.Status, resumers)
			for i := range cs { // each replays on a goroutine of its own, all at once
				cs[i] = e.subscribe(t, &after)
			}
			for _, c := range cs {
				assertSameStatuses(t, want, receive(t, c, len(want)))
			}
			n := e.db.Statements() - before
			t.Logf("%s: %d resumers at %d cost %d statements", name, resumers, after, n)
			assert.LessOrEqual(t, n, uint64(resumers/10), name)
		}
		count("behind the hub's first event", 20, history[20:])
		count("again, from memory", 20, history[20:])
		count("at the head", 30, nil)
		live := e.post(t, "live")
		count("after a live event", 25, append(slices.Clone(history[25:]), live))
	})
}

// TestStartWithoutCursor: under WithStart, a subscription without a cursor
// starts after the given position, as if it had asked for it; a cursor
// given wins.
func TestStartWithoutCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		e := newEnv(t, dialect, stream.Options{PollInterval: fastPoll})
		history := e.postN(t, 3)
		ctx, cancel := context.WithCancel(stream.WithStart(t.Context(), 1))
		defer cancel()
		c, err := e.feed.Subscribe(ctx, models.StatusStream, nil)
		require.NoError(t, err)
		assertSameStatuses(t, history[1:], receive(t, c, 2))
		two := int64(2)
		given, err := e.feed.Subscribe(ctx, models.StatusStream, &two)
		require.NoError(t, err)
		assertSameStatuses(t, history[2:], receive(t, given, 1))
		e.requireNext(t, c, given)
	})
}
