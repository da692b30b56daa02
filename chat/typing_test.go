package chat_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/models"
)

// typed is what a test checks of a typing event: who, on or off, and when
// it ends, counted from the start of the bubble.
type typed struct {
	user    string
	typing  bool
	expires time.Duration
}

// typingEvents reads what ch holds once everything else has settled.
func typingEvents(t *testing.T, ch <-chan *models.TypingEvent, room int64, start time.Time) []typed {
	t.Helper()
	synctest.Wait()
	var out []typed
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "the channel is closed")
			assert.Equal(t, room, ev.RoomID)
			assert.Equal(t, time.UTC, ev.ExpiresAt.Location())
			out = append(out, typed{ev.User.Name, ev.Typing, ev.ExpiresAt.Sub(start)})
		default:
			return out
		}
	}
}

// sleepUntil advances the bubble's clock to start+at.
func sleepUntil(start time.Time, at time.Duration) {
	time.Sleep(time.Until(start.Add(at)))
}

// typingTest runs test in a synctest bubble with a tracker whose indicators
// last 5s; start is when the bubble's clock started.
func typingTest(t *testing.T, test func(t *testing.T, ty *chat.Typing, start time.Time)) {
	synctest.Test(t, func(t *testing.T) { test(t, chat.NewTyping(5*time.Second), time.Now()) })
}

// typingStep is one step of a typing test: at at (from the start of the
// bubble), do, and then a watcher of room 1 has received want.
type typingStep struct {
	at   time.Duration
	name string
	do   func()
	want []typed
}

// runTypingSteps runs steps in order, checking what w receives.
func runTypingSteps(t *testing.T, w <-chan *models.TypingEvent, start time.Time, steps []typingStep) {
	t.Helper()
	for _, s := range steps {
		sleepUntil(start, s.at)
		if s.do != nil {
			s.do()
		}
		assert.Equal(t, s.want, typingEvents(t, w, 1, start), "at %v: %s", s.at, s.name)
	}
}

func TestTypingLifecycle(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		w := ty.Watch(t.Context(), 1, cid.ID)
		set := func(u *models.User, typing bool) func() { return func() { ty.Set(1, u, typing) } }
		steps := []typingStep{
			{at: 0, name: "ada starts", do: set(ada, true), want: []typed{{"ada", true, 5 * time.Second}}},
			{at: 3 * time.Second, name: "ada renews", do: set(ada, true), want: []typed{{"ada", true, 8 * time.Second}}},
			{at: 5 * time.Second, name: "the first expiry is called off"},
			{at: 8*time.Second - time.Nanosecond, name: "still on just before the end"},
			{at: 8 * time.Second, name: "ends by itself", want: []typed{{"ada", false, 8 * time.Second}}},
			{at: 20 * time.Second, name: "ends once"},
			{at: 21 * time.Second, name: "bob starts", do: set(bob, true), want: []typed{{"bob", true, 26 * time.Second}}},
			{at: 22 * time.Second, name: "bob stops", do: set(bob, false), want: []typed{{"bob", false, 22 * time.Second}}},
			{at: 30 * time.Second, name: "no expiry after a stop"},
			{at: 31 * time.Second, name: "stopping when not typing", do: set(bob, false)},
			{at: 32 * time.Second, name: "ada starts again", do: set(ada, true), want: []typed{{"ada", true, 37 * time.Second}}},
			{at: 37 * time.Second, name: "and it ends again", want: []typed{{"ada", false, 37 * time.Second}}},
		}
		runTypingSteps(t, w, start, steps)
	})
}

// TestTypingCoalesced: a user's typing events in a room go out at most once
// per TypingEvery, however often they are set; the coalesced ones still
// extend the indicator, and a stop goes out at once.
func TestTypingCoalesced(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		w := ty.Watch(t.Context(), 1, cid.ID)
		set := func(u *models.User, typing bool) func() { return func() { ty.Set(1, u, typing) } }
		burst := func() { // 50 in the next 950 ms
			for range 50 {
				ty.Set(1, ada, true)
				time.Sleep(19 * time.Millisecond)
			}
		}
		ms := time.Millisecond
		steps := []typingStep{
			{at: 0, name: "ada starts", do: set(ada, true), want: []typed{{"ada", true, 5 * time.Second}}},
			{at: 10 * ms, name: "a burst within the second goes nowhere", do: burst},
			{at: 1000 * ms, name: "the second is over", do: set(ada, true), want: []typed{{"ada", true, 6 * time.Second}}},
			{at: 1500 * ms, name: "bob is not held back by ada", do: set(bob, true), want: []typed{{"bob", true, 6500 * ms}}},
			{at: 1600 * ms, name: "coalesced, but extended", do: set(ada, true)},
			{at: 6 * time.Second, name: "so it does not end at the last sent expiry"},
			{at: 6500 * ms, name: "bob's ends", want: []typed{{"bob", false, 6500 * ms}}},
			{at: 6600 * ms, name: "ada's ends when the coalesced one says", want: []typed{{"ada", false, 6600 * ms}}},
			{at: 7 * time.Second, name: "ada starts again", do: set(ada, true), want: []typed{{"ada", true, 12 * time.Second}}},
			{at: 7100 * ms, name: "a stop goes out at once", do: set(ada, false), want: []typed{{"ada", false, 7100 * ms}}},
			{at: 7200 * ms, name: "a start right after it is held back", do: set(ada, true)},
			{at: 7300 * ms, name: "and so is its stop, never shown", do: set(ada, false)},
			{at: 7400 * ms, name: "held back again", do: set(ada, true)},
			{at: 7999 * ms, name: "until the second is over"},
			{at: 8 * time.Second, name: "then it goes out", want: []typed{{"ada", true, 12400 * ms}}},
			{at: 12400 * ms, name: "and ends", want: []typed{{"ada", false, 12400 * ms}}},
			{at: 14 * time.Second, name: "start, stop, start at once", do: func() { set(ada, true)(); set(ada, false)(); set(ada, true)() },
				want: []typed{{"ada", true, 19 * time.Second}, {"ada", false, 14 * time.Second}}},
			{at: 15 * time.Second, name: "the last start a second later", want: []typed{{"ada", true, 19 * time.Second}}},
			{at: 19 * time.Second, name: "and its end", want: []typed{{"ada", false, 19 * time.Second}}},
			{at: 20 * time.Second, name: "nothing more"},
		}
		runTypingSteps(t, w, start, steps)
	})
}

func TestTypingTTL(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{name: "zero takes the default", ttl: 0, want: chat.DefaultTypingTTL},
		{name: "negative takes the default", ttl: -time.Second, want: chat.DefaultTypingTTL},
		{name: "short", ttl: 2 * time.Second, want: 2 * time.Second},
		{name: "long", ttl: time.Minute, want: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				ty := chat.NewTyping(tt.ttl)
				w := ty.Watch(t.Context(), 1, 0)
				ty.Set(1, ada, true)
				assert.Equal(t, []typed{{"ada", true, tt.want}}, typingEvents(t, w, 1, start))
				sleepUntil(start, tt.want-time.Nanosecond)
				assert.Empty(t, typingEvents(t, w, 1, start), "before the TTL")
				sleepUntil(start, tt.want)
				assert.Equal(t, []typed{{"ada", false, tt.want}}, typingEvents(t, w, 1, start))
			})
		})
	}
}

func TestTypingWatchers(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		watchers := []struct {
			name   string
			viewer int64
			want   []typed
		}{
			{name: "ada", viewer: ada.ID, want: []typed{{"bob", true, 6 * time.Second}, {"bob", false, 6 * time.Second}}},
			{name: "bob", viewer: bob.ID, want: []typed{{"ada", true, 5 * time.Second}, {"ada", false, 5 * time.Second}}},
			{name: "anonymous", viewer: 0, want: []typed{
				{"ada", true, 5 * time.Second}, {"bob", true, 6 * time.Second},
				{"ada", false, 5 * time.Second}, {"bob", false, 6 * time.Second},
			}},
		}
		chans := make([]<-chan *models.TypingEvent, len(watchers))
		for i, w := range watchers {
			chans[i] = ty.Watch(t.Context(), 1, w.viewer)
		}
		elsewhere := ty.Watch(t.Context(), 2, 0)

		ty.Set(1, ada, true)
		sleepUntil(start, time.Second)
		ty.Set(1, bob, true)
		sleepUntil(start, 10*time.Second)
		for i, w := range watchers {
			assert.Equal(t, w.want, typingEvents(t, chans[i], 1, start), "%s sees", w.name)
		}
		assert.Empty(t, typingEvents(t, elsewhere, 2, start), "a watcher of another room")
	})
}

func TestTypingWatchStartsWithTheCurrentIndicators(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		ty.Set(1, ada, true)
		sleepUntil(start, 2*time.Second)
		ty.Set(1, bob, true)
		ty.Set(1, cid, true)
		ty.Set(1, cid, false)
		ty.Set(2, cid, true)
		sleepUntil(start, 3*time.Second)

		all := ty.Watch(t.Context(), 1, 0)
		assert.ElementsMatch(t, []typed{{"ada", true, 5 * time.Second}, {"bob", true, 7 * time.Second}},
			typingEvents(t, all, 1, start), "who is typing now, and until when")
		own := ty.Watch(t.Context(), 1, ada.ID)
		assert.Equal(t, []typed{{"bob", true, 7 * time.Second}}, typingEvents(t, own, 1, start), "not ada's own")

		sleepUntil(start, 5*time.Second)
		assert.Equal(t, []typed{{"ada", false, 5 * time.Second}}, typingEvents(t, all, 1, start), "then the changes")
	})
}

func TestTypingSlowWatcher(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		slow := ty.Watch(t.Context(), 1, 0)
		const typists = 500
		for i := range typists { // the watcher reads none of them: Set must not wait for it
			ty.Set(1, &models.User{ID: int64(100 + i), Name: "typist"}, true)
		}
		got := typingEvents(t, slow, 1, start)
		assert.NotEmpty(t, got)
		assert.Less(t, len(got), typists, "the events beyond the buffer are dropped")

		ty.Set(1, ada, true)
		assert.Equal(t, []typed{{"ada", true, 5 * time.Second}}, typingEvents(t, slow, 1, start), "a drained watcher gets events again")
	})
}

func TestTypingWatchEndsWithContext(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		ctx, cancel := context.WithCancel(t.Context())
		ended := ty.Watch(ctx, 1, 0)
		other := ty.Watch(t.Context(), 1, 0)
		ty.Set(1, ada, true)
		cancel()
		closed(t, ended)

		sleepUntil(start, time.Second)
		ty.Set(1, bob, true) // must not send on the closed channel
		sleepUntil(start, 10*time.Second)
		assert.Equal(t, []typed{
			{"ada", true, 5 * time.Second}, {"bob", true, 6 * time.Second},
			{"ada", false, 5 * time.Second}, {"bob", false, 6 * time.Second},
		}, typingEvents(t, other, 1, start), "the other watcher goes on")
	})
}

func TestTypingStop(t *testing.T) {
	typingTest(t, func(t *testing.T, ty *chat.Typing, start time.Time) {
		w := ty.Watch(t.Context(), 1, 0)
		ty.Set(1, ada, true)
		ty.Set(2, bob, true)
		assert.Len(t, typingEvents(t, w, 1, start), 1)
		ty.Stop()
		sleepUntil(start, time.Minute)
		assert.Empty(t, typingEvents(t, w, 1, start), "no expiry after Stop")
	})
}
