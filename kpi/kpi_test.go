package kpi

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/live/livetest"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub/mempubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestMain fails the package when a test leaves goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The Service tests run inside synctest bubbles, database included (the
// embedded SQLite runs on the goroutines that call it): time is virtual, so
// intervals and retention take no real time, and synctest.Wait lets every
// goroutine run until it blocks, so "nothing arrives" is a certainty rather
// than a timeout.

// next returns the one value c delivers once everything else has settled.
func next[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	got := livetest.Received(t, c)
	require.Len(t, got, 1, "values delivered")
	return got[0]
}

// newService starts a Service over a fresh SQLite database and the
// in-process broker, as server.go wires it; all of it is closed when the
// test ends. It runs inside a synctest bubble.
func newService(t *testing.T, opts Options) *Service {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	broker := mempubsub.New(0)
	t.Cleanup(func() { assert.NoError(t, broker.Close()) })
	s := New(db, broker, opts)
	s.Start(t.Context())
	t.Cleanup(s.Close)
	return s
}

// value is the value v of module/key, without label or unit.
func value(module, key string, v float64) *models.KPIInput {
	return &models.KPIInput{Module: module, Key: key, Value: v}
}

// record records in through s, failing the test on an error, and lets the
// announcement reach every watcher.
func record(t *testing.T, s *Service, in ...*models.KPIInput) {
	t.Helper()
	_, err := s.Record(t.Context(), nil, in, "")
	require.NoError(t, err)
	synctest.Wait()
}

// values returns "module/key=value" of each KPI, in order.
func values(ks []*models.KPI) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Module + "/" + k.Key + "=" + strconv.FormatFloat(k.Value, 'f', -1, 64)
	}
	return out
}

// cards returns "module/key=value" of the KPIs on d's cards, card by card.
func cards(d *models.Dashboard) []string {
	var out []string
	for _, m := range d.Modules {
		out = append(out, values(m.KPIs)...)
	}
	return out
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2025, 3, 30, 1, 59, 59, 123_456_789, time.FixedZone("CEST", 2*3600))
	at := func(minute int) time.Time {
		return t0.Add(time.Duration(minute) * time.Minute).UTC().Truncate(time.Millisecond)
	}
	kpi := func(module, key string, previous *float64, v float64, minute int) *models.KPI {
		return &models.KPI{Module: module, Key: key, Label: key, Value: v, Previous: previous, UpdatedAt: at(minute)}
	}
	was := func(v float64) *float64 { return &v }
	// Sorted by module and key, as the store returns them.
	kpis := []*models.KPI{
		kpi("finance", "cash", was(100), 110, 3),     // +10%
		kpi("finance", "margin", was(50), 40, 1),     // -20%
		kpi("finance", "revenue", nil, 9, 9),         // first value: no change
		kpi("hr", "absence", was(-10), -5, 2),        // +50% of the previous magnitude
		kpi("hr", "headcount", was(0), 5, 4),         // from 0: no relative change
		kpi("hr", "open_roles", was(7), 7, 5),        // unchanged
		kpi("security", "incidents", was(20), 18, 0), // -10%, as large as cash's
		kpi("security", "mttr", was(30), 33, 0),      // +10%, as large as cash's
	}
	tests := []struct {
		name string
		topN int
		want []string
	}{
		{name: "none", topN: 0, want: []string{}},
		{name: "the largest", topN: 1, want: []string{"hr/absence=-5"}},
		{name: "largest first, ties in module and key order", topN: 5,
			want: []string{"hr/absence=-5", "finance/margin=40", "finance/cash=110", "security/incidents=18", "security/mttr=33"}},
		{name: "more than there are movers", topN: 20,
			want: []string{"hr/absence=-5", "finance/margin=40", "finance/cash=110", "security/incidents=18", "security/mttr=33"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Summarize(kpis, tt.topN, t0)
			assert.Equal(t, tt.want, values(d.TopMovers), "top movers")
			assert.Equal(t, t0.UTC().Truncate(time.Millisecond), d.GeneratedAt)
			require.Len(t, d.Modules, 3, "cards")
			for i, want := range []struct {
				module  string
				kpis    []*models.KPI
				updated time.Time
			}{
				{"finance", kpis[0:3], at(9)},
				{"hr", kpis[3:6], at(5)},
				{"security", kpis[6:8], at(0)},
			} {
				assert.Equal(t, want.module, d.Modules[i].Module)
				assert.Equal(t, want.kpis, d.Modules[i].KPIs, "card %s", want.module)
				assert.Equal(t, want.updated, d.Modules[i].UpdatedAt, "card %s: the newest of its KPIs", want.module)
			}
		})
	}

	empty := Summarize(nil, 3, t0)
	assert.NotNil(t, empty.Modules, "no cards must be an empty list, not null")
	assert.Empty(t, empty.Modules)
	assert.NotNil(t, empty.TopMovers)
	assert.Empty(t, empty.TopMovers)
}

// TestSummarizeTiesKeepOrder has more ties than sorting small slices
// keeps in order by accident.
func TestSummarizeTiesKeepOrder(t *testing.T) {
	var kpis []*models.KPI
	var want []string
	for i := range 40 {
		previous, v := 10.0, 11.0
		if i%2 == 1 {
			v = 9 // as large a change, downwards
		}
		k := &models.KPI{Module: "m", Key: fmt.Sprintf("k%02d", i), Value: v, Previous: &previous}
		kpis = append(kpis, k)
		want = append(want, fmt.Sprintf("m/k%02d=%v", i, v))
	}
	kpis = append(kpis, &models.KPI{Module: "n", Key: "big", Value: 30, Previous: ptr(10.0)})
	assert.Equal(t, append([]string{"n/big=30"}, want[:29]...), values(Summarize(kpis, 30, time.Now()).TopMovers))
}

func TestRecordRefusesBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{})
		watch, err := s.WatchModule(t.Context(), "sales")
		require.NoError(t, err)
		next(t, watch)
		many := make([]*models.KPIInput, models.MaxKPIBatch+1)
		for i := range many {
			many[i] = value("sales", "k"+strconv.Itoa(i), 1)
		}
		tests := []struct {
			name    string
			in      []*models.KPIInput
			errPart string
		}{
			{name: "nothing", in: nil, errPart: "must not be empty"},
			{name: "NaN", in: []*models.KPIInput{value("sales", "revenue", 1), value("sales", "orders", math.NaN())}, errPart: "inputs[1].value"},
			{name: "+Inf", in: []*models.KPIInput{value("sales", "revenue", math.Inf(1))}, errPart: "finite"},
			{name: "-Inf", in: []*models.KPIInput{value("sales", "revenue", math.Inf(-1))}, errPart: "finite"},
			{name: "upper-case module", in: []*models.KPIInput{value("Sales", "revenue", 1)}, errPart: "inputs[0].module"},
			{name: "key starting with a digit", in: []*models.KPIInput{value("sales", "1st", 1)}, errPart: "inputs[0].key"},
			{name: "twice in a batch", in: []*models.KPIInput{value("sales", "revenue", 1), value("sales", "orders", 1), value("sales", "revenue", 2)},
				errPart: "inputs[2]: sales/revenue appears twice"},
			{name: "label too long", in: []*models.KPIInput{{Module: "sales", Key: "revenue", Value: 1, Label: ptr(strings.Repeat("x", 101))}}, errPart: "label"},
			{name: "one too many", in: many, errPart: "limit is 500"},
		}
		for _, tt := range tests { // no t.Run in a bubble
			got, err := s.Record(t.Context(), nil, tt.in, "")
			require.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: error %v", tt.name, err)
			assert.ErrorContains(t, err, tt.errPart, tt.name)
			assert.Nil(t, got, tt.name)
			stored, err := s.db.KPIs(t.Context(), "")
			require.NoError(t, err)
			assert.Empty(t, stored, "%s: the refused batch was stored", tt.name)
			assert.Empty(t, livetest.Received(t, watch), "%s: the refused batch was announced", tt.name)
		}
		record(t, s, value("sales", "revenue", 1))
		assert.Equal(t, []string{"sales/revenue=1"}, values(next(t, watch).KPIs))
	})
}

// TestReads: the queries' reads see what was recorded.
func TestReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{})
		start := time.Now()
		record(t, s, value("sales", "revenue", 1), value("hr", "headcount", 3))
		time.Sleep(time.Minute)
		record(t, s, value("sales", "revenue", 2), value("sales", "orders", 5))

		modules, err := s.Modules(t.Context())
		require.NoError(t, err)
		assert.Equal(t, []string{"hr", "sales"}, modules)
		kpis, err := s.KPIs(t.Context(), "sales")
		require.NoError(t, err)
		assert.Equal(t, []string{"sales/orders=5", "sales/revenue=2"}, values(kpis))
		samples, err := s.History(t.Context(), "sales", "revenue", start, 10)
		require.NoError(t, err)
		require.Len(t, samples, 2)
		assert.Equal(t, []float64{1, 2}, []float64{samples[0].Value, samples[1].Value}, "oldest first")
		samples, err = s.History(t.Context(), "sales", "revenue", start.Add(time.Second), 10)
		require.NoError(t, err)
		assert.Len(t, samples, 1, "only since")
	})
}

func TestWatchModule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{})
		record(t, s, value("sales", "revenue", 1), value("sales", "orders", 2), value("hr", "headcount", 3))

		ctx, stop := context.WithCancel(t.Context())
		sales, err := s.WatchModule(ctx, "sales")
		require.NoError(t, err)
		salesTab, err := s.WatchModule(ctx, "sales")
		require.NoError(t, err)
		rehab, err := s.WatchModule(ctx, "rehab")
		require.NoError(t, err)
		for _, c := range []<-chan *models.ModuleKPIs{sales, salesTab} {
			first := next(t, c)
			assert.Equal(t, "sales", first.Module)
			assert.Equal(t, []string{"sales/orders=2", "sales/revenue=1"}, values(first.KPIs), "the current set comes first")
		}
		first := next(t, rehab)
		assert.Equal(t, "rehab", first.Module)
		assert.Empty(t, first.KPIs, "a module without KPIs")

		record(t, s, value("hr", "headcount", 4))
		assert.Empty(t, livetest.Received(t, sales), "another module's change reached the sales watcher")
		record(t, s, value("hr", "headcount", 5), value("sales", "revenue", 6))
		for _, c := range []<-chan *models.ModuleKPIs{sales, salesTab} {
			ev := next(t, c)
			assert.Equal(t, "sales", ev.Module)
			assert.Equal(t, []string{"sales/orders=2", "sales/revenue=6"}, values(ev.KPIs), "the full set after a change")
			assert.Equal(t, 1.0, *ev.KPIs[1].Previous)
		}
		record(t, s, value("rehab", "patients", 7))
		assert.Equal(t, []string{"rehab/patients=7"}, values(next(t, rehab).KPIs))
		assert.Empty(t, livetest.Received(t, sales))

		stop()
		synctest.Wait()
		for _, c := range []<-chan *models.ModuleKPIs{sales, salesTab, rehab} {
			_, ok := <-c
			assert.False(t, ok, "the channel is open after its context ended")
		}
		assert.Empty(t, s.modules.Keys(), "watchers left registered")
	})
}

// TestWatchersShareTheirReads: however many watch a module or a dashboard
// size, a change costs one read of the module (and a dashboard round one
// read of the KPIs), and a watcher that joins a key already watched costs
// no read at all: it gets the value the others have.
func TestWatchersShareTheirReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		s := newService(t, Options{DashboardInterval: interval})
		record(t, s, value("sales", "revenue", 1), value("hr", "headcount", 3))
		time.Sleep(interval) // the first pruning and dashboard round are over
		synctest.Wait()
		before := s.db.Statements()
		record(t, s, value("sales", "revenue", 2))
		recordCost := s.db.Statements() - before // nobody watches yet

		first, err := s.WatchModule(t.Context(), "sales")
		require.NoError(t, err)
		next(t, first)
		board, err := s.WatchDashboard(t.Context(), 4)
		require.NoError(t, err)
		next(t, board)
		before = s.db.Statements()
		const n = 50
		var modules []<-chan *models.ModuleKPIs
		var boards []<-chan *models.Dashboard
		for range n {
			c, err := s.WatchModule(t.Context(), "sales")
			require.NoError(t, err)
			modules = append(modules, c)
			d, err := s.WatchDashboard(t.Context(), 4)
			require.NoError(t, err)
			boards = append(boards, d)
		}
		for i := range n {
			assert.Equal(t, []string{"sales/revenue=2"}, values(next(t, modules[i]).KPIs))
			next(t, boards[i])
		}
		assert.Zero(t, s.db.Statements()-before, "statements for %d watchers joining watched keys", 2*n)

		before = s.db.Statements()
		record(t, s, value("sales", "revenue", 3))
		assert.Equal(t, recordCost+1, s.db.Statements()-before, "statements for a change watched by %d", n+1)
		for i := range n {
			assert.Equal(t, []string{"sales/revenue=3"}, values(next(t, modules[i]).KPIs))
		}
		before = s.db.Statements()
		time.Sleep(interval)
		synctest.Wait()
		assert.Equal(t, uint64(1), s.db.Statements()-before, "statements for a dashboard round to %d", n+1)
		for i := range n {
			assert.Equal(t, []string{"sales/revenue=3"}, values(next(t, boards[i]).TopMovers))
		}
	})
}

// TestRecordIdempotent: a retry with the key of a batch returns the KPIs
// as the first call returned them, records nothing and announces nothing;
// the key with another batch is BAD_USER_INPUT; another publisher's same
// key is theirs.
func TestRecordIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{})
		ctx := t.Context()
		ops, feeder := &models.User{ID: 1, Name: "ops"}, &models.User{ID: 2, Name: "feeder"}
		sales, err := s.WatchModule(ctx, "sales")
		require.NoError(t, err)
		next(t, sales)

		batch := []*models.KPIInput{value("sales", "revenue", 1), value("sales", "orders", 2)}
		first, err := s.Record(ctx, ops, batch, "k")
		require.NoError(t, err)
		assert.Equal(t, []string{"sales/orders=2", "sales/revenue=1"}, values(next(t, sales).KPIs))
		record(t, s, value("sales", "revenue", 10)) // a change since
		next(t, sales)

		again, err := s.Record(ctx, ops, []*models.KPIInput{value("sales", "revenue", 1), value("sales", "orders", 2)}, "k")
		require.NoError(t, err)
		assert.Equal(t, values(first), values(again), "the first result, not the values now")
		assert.Nil(t, again[0].Previous)
		assert.Empty(t, livetest.Received(t, sales), "nothing announced")
		history, err := s.History(ctx, "sales", "revenue", time.Time{}, 10)
		require.NoError(t, err)
		assert.Len(t, history, 2, "nothing recorded")

		for name, other := range map[string][]*models.KPIInput{
			"another value": {value("sales", "revenue", 1.5), value("sales", "orders", 2)},
			"another order": {value("sales", "orders", 2), value("sales", "revenue", 1)},
			"fewer values":  {value("sales", "revenue", 1)},
		} {
			_, err := s.Record(ctx, ops, other, "k")
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: %v", name, err)
		}
		theirs, err := s.Record(ctx, feeder, batch, "k")
		require.NoError(t, err, "another publisher's k")
		assert.Equal(t, 10.0, *theirs[0].Previous, "recorded anew")
		assert.Len(t, livetest.Received(t, sales), 1)
	})
}

func TestWatchDashboardRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, every, window = 200 * time.Millisecond, 10 * time.Millisecond, 2 * time.Second
		s := newService(t, Options{DashboardInterval: interval})
		record(t, s, value("sales", "revenue", 100), value("hr", "headcount", 10))
		start := time.Now()
		c, err := s.WatchDashboard(t.Context(), 3)
		require.NoError(t, err)
		first := next(t, c)
		assert.Equal(t, start, time.Now(), "the first dashboard waited")
		assert.Equal(t, []string{"hr/headcount=10", "sales/revenue=100"}, cards(first))

		type event struct {
			at time.Time
			d  *models.Dashboard
		}
		events := []event{{start, first}}
		collect := func() {
			for _, d := range livetest.Received(t, c) {
				events = append(events, event{time.Now(), d})
			}
		}
		var lastChange time.Time
		for i := 1; time.Since(start) < window; i++ {
			lastChange = time.Now()
			record(t, s, value("sales", "revenue", 100+float64(i)), value("hr", "headcount", 10+float64(i%7)))
			time.Sleep(every)
			collect()
		}
		time.Sleep(interval)
		collect()
		want, err := s.db.KPIs(t.Context(), "")
		require.NoError(t, err)

		assert.LessOrEqual(t, len(events), int(window/interval)+2, "dashboards sent in %v, at most one every %v", window, interval)
		require.GreaterOrEqual(t, len(events), 2, "no dashboard after the first while values changed for %v", window)
		for i := 2; i < len(events); i++ {
			assert.GreaterOrEqual(t, events[i].at.Sub(events[i-1].at), interval, "dashboards %d and %d", i, i+1)
		}
		final := events[len(events)-1].d
		assert.Equal(t, values(want), cards(final), "the last dashboard is stale")
		assert.False(t, final.GeneratedAt.Before(lastChange.UTC().Truncate(time.Millisecond)),
			"generated at %v, before the last change at %v", final.GeneratedAt, lastChange)
		t.Logf("%d dashboards (the first included) in %v with a change every %v and an interval of %v", len(events), window, every, interval)

		time.Sleep(10 * interval)
		assert.Empty(t, livetest.Received(t, c), "a dashboard without a change")
	})
}

func TestWatchDashboardSharesOneComputation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		s := newService(t, Options{DashboardInterval: interval})
		record(t, s, value("sales", "revenue", 100), value("hr", "headcount", 10), value("hr", "absence", 4))
		var tabs []<-chan *models.Dashboard
		for _, topN := range []int{2, 2, 2, 1} {
			c, err := s.WatchDashboard(t.Context(), topN)
			require.NoError(t, err)
			next(t, c)
			tabs = append(tabs, c)
		}
		record(t, s, value("sales", "revenue", 150), value("hr", "headcount", 11), value("hr", "absence", 3))
		time.Sleep(interval)
		got := make([]*models.Dashboard, len(tabs))
		for i, c := range tabs {
			got[i] = next(t, c)
		}
		assert.Same(t, got[0], got[1], "watchers of the same topN got separate computations")
		assert.Same(t, got[0], got[2])
		assert.Equal(t, []string{"sales/revenue=150", "hr/absence=3"}, values(got[0].TopMovers))
		assert.Equal(t, []string{"sales/revenue=150"}, values(got[3].TopMovers))
		assert.Equal(t, got[0].Modules, got[3].Modules)
	})
}

func TestRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := storetest.Open(t, store.SQLite)
		broker := mempubsub.New(0)
		t.Cleanup(func() { assert.NoError(t, broker.Close()) })
		const retention = 7 * 24 * time.Hour
		now := time.Now()
		for _, age := range []time.Duration{retention + time.Hour, retention + time.Millisecond, retention - 30*time.Minute, time.Hour, 0} {
			_, _, err := db.RecordKPIs(t.Context(), []*models.KPIInput{value("sales", "revenue", age.Hours())}, now.Add(-age), nil)
			require.NoError(t, err)
		}
		history := func() []float64 {
			ss, err := db.KPIHistory(t.Context(), "sales", "revenue", now.Add(-30*24*time.Hour), 100)
			require.NoError(t, err)
			out := make([]float64, len(ss))
			for i, s := range ss {
				out[i] = s.Value
			}
			return out
		}
		s := New(db, broker, Options{Retention: retention})
		s.Start(t.Context())
		t.Cleanup(s.Close)
		synctest.Wait()
		assert.Equal(t, []float64{(retention - 30*time.Minute).Hours(), 1, 0}, history(), "pruned at start")

		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []float64{1, 0}, history(), "pruned an hour later")
		current, err := db.KPIs(t.Context(), "")
		require.NoError(t, err)
		assert.Equal(t, []string{"sales/revenue=0"}, values(current), "retention removed the current value")
	})
}

// TestRetentionClock checks that retention follows the injected clock.
func TestRetentionClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{Retention: time.Hour, Now: func() time.Time { return time.Now().Add(-24 * time.Hour) }})
		// An hour from now, the clock says 23 hours ago: value 1 is then 3
		// hours old and goes, value 2 half an hour old and stays (by the real
		// clock, both would go).
		_, _, err := s.db.RecordKPIs(t.Context(), []*models.KPIInput{value("sales", "revenue", 1)}, time.Now().Add(-26*time.Hour), nil)
		require.NoError(t, err)
		_, _, err = s.db.RecordKPIs(t.Context(), []*models.KPIInput{value("sales", "revenue", 2)}, time.Now().Add(-23*time.Hour-30*time.Minute), nil)
		require.NoError(t, err)
		time.Sleep(time.Hour)
		synctest.Wait()
		ss, err := s.db.KPIHistory(t.Context(), "sales", "revenue", time.Now().Add(-48*time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, ss, 1, "samples kept")
		assert.Equal(t, 2.0, ss[0].Value)
	})
}

func TestDemoStep(t *testing.T) {
	vals := map[string]float64{}
	first := demoStep(vals)
	require.Len(t, first, 24)
	require.NoError(t, models.ValidateKPIInputs(first))
	modules := map[string]int{}
	for i, in := range first {
		d := demoSet[i]
		assert.Equal(t, d.start, in.Value, "%s/%s starts at its start value", d.module, d.key)
		assert.Equal(t, d.label, *in.Label)
		assert.Equal(t, d.unit, *in.Unit)
		modules[in.Module]++
	}
	assert.Equal(t, map[string]int{"reports": 4, "finance": 4, "hr": 4, "security": 4, "elearning": 4, "rehab": 4}, modules)

	// Start at and beyond the bounds, so that clamping is exercised.
	for i, d := range demoSet {
		switch i % 3 {
		case 0:
			vals[d.module+"/"+d.key] = d.hi + 10*d.step
		case 1:
			vals[d.module+"/"+d.key] = d.lo - 10*d.step
		}
	}
	prev := map[string]float64{}
	for step := range 1000 {
		in := demoStep(vals)
		require.NoError(t, models.ValidateKPIInputs(in), "step %d", step)
		for i, v := range in {
			d := demoSet[i]
			id := d.module + "/" + d.key
			if v.Module+"/"+v.Key != id || vals[id] != v.Value {
				t.Fatalf("step %d: input %d is %s/%s = %v, values holds %v for %s", step, i, v.Module, v.Key, v.Value, vals[id], id)
			}
			if v.Value < d.lo || v.Value > d.hi {
				t.Fatalf("step %d: %s = %v, outside [%v, %v]", step, id, v.Value, d.lo, d.hi)
			}
			text := strconv.FormatFloat(v.Value, 'f', -1, 64)
			if _, frac, _ := strings.Cut(text, "."); len(frac) > d.decimals {
				t.Fatalf("step %d: %s = %s has more than %d decimals", step, id, text, d.decimals)
			}
			if p, ok := prev[id]; ok && math.Abs(v.Value-p) > d.step+math.Pow(10, -float64(d.decimals)) {
				t.Fatalf("step %d: %s jumped from %v to %v (step %v)", step, id, p, v.Value, d.step)
			}
			prev[id] = v.Value
		}
	}
}

func TestStartDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 5 * time.Second
		s := newService(t, Options{})
		watch, err := s.WatchModule(t.Context(), "finance")
		require.NoError(t, err)
		next(t, watch)
		s.StartDemo(t.Context(), interval)
		synctest.Wait()
		kpis, err := s.db.KPIs(t.Context(), "")
		require.NoError(t, err)
		assert.Len(t, kpis, len(demoSet), "the first values are recorded at once")
		assert.Len(t, next(t, watch).KPIs, 4, "watchers see the demo's values")

		time.Sleep(interval)
		synctest.Wait()
		for _, d := range demoSet {
			ss, err := s.db.KPIHistory(t.Context(), d.module, d.key, time.Now().Add(-time.Hour), 10)
			require.NoError(t, err)
			assert.Len(t, ss, 2, "%s/%s: samples after one interval", d.module, d.key)
		}
		assert.Len(t, next(t, watch).KPIs, 4)
	})
}

func ptr[T any](v T) *T { return &v }

// TestOnlyOneReplicaFeedsTheDemo: two services on one MySQL database both
// start the demo feed; only the one holding the lead records, so each KPI
// moves once per interval, not twice.
func TestOnlyOneReplicaFeedsTheDemo(t *testing.T) {
	url := storetest.MySQLURL(t)
	replica := func() *Service {
		db, err := store.Open(t.Context(), url, store.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		require.NoError(t, db.Migrate(t.Context()))
		s := New(db, mempubsub.New(0), Options{})
		s.Start(t.Context())
		t.Cleanup(s.Close)
		return s
	}
	a, b := replica(), replica()
	const interval, rounds = 100 * time.Millisecond, 10
	a.StartDemo(t.Context(), interval)
	b.StartDemo(t.Context(), interval)
	time.Sleep(rounds*interval + interval/2)
	ss, err := a.db.KPIHistory(t.Context(), "finance", "revenue", time.Now().Add(-time.Hour), 100)
	require.NoError(t, err)
	t.Logf("%d samples in %d intervals", len(ss), rounds)
	// One feeder records at start and at each tick: at most rounds+1 (+1 for
	// a tick at the very end); two would record about twice that.
	assert.LessOrEqual(t, len(ss), rounds+2, "only one replica feeds")
	assert.GreaterOrEqual(t, len(ss), rounds/2, "the feed runs")
}

// TestWatchersCatchUpAfterABrokerOutage: during an outage, a change made on
// this replica still reaches its module and dashboard watchers; one made on
// another replica (committed, never announced here) reaches them once the
// broker is back, the dashboard's watchers included.
func TestWatchersCatchUpAfterABrokerOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		db := storetest.Open(t, store.SQLite)
		broker := pubsubtest.NewOutage(mempubsub.New(0))
		t.Cleanup(func() { assert.NoError(t, broker.Broker.Close()) })
		s := New(db, broker, Options{DashboardInterval: interval})
		s.Start(t.Context())
		t.Cleanup(s.Close)
		record(t, s, value("sales", "revenue", 1))

		module, err := s.WatchModule(t.Context(), "sales")
		require.NoError(t, err)
		dashboard, err := s.WatchDashboard(t.Context(), 3)
		require.NoError(t, err)
		next(t, module)
		next(t, dashboard)

		broker.SetDown(true)
		record(t, s, value("sales", "revenue", 2))
		assert.Equal(t, []string{"sales/revenue=2"}, values(next(t, module).KPIs), "a local change, unannounced")
		time.Sleep(interval)
		assert.Equal(t, []string{"sales/revenue=2"}, cards(next(t, dashboard)))

		// Another replica records meanwhile: committed, never announced.
		_, _, err = db.RecordKPIs(t.Context(), []*models.KPIInput{value("sales", "revenue", 3)}, time.Now(), nil)
		require.NoError(t, err)
		broker.SetDown(false)
		time.Sleep(2 * time.Second) // Follow resubscribes within a second
		assert.Equal(t, []string{"sales/revenue=3"}, values(next(t, module).KPIs), "caught up after the outage")
		assert.Equal(t, []string{"sales/revenue=3"}, cards(next(t, dashboard)), "the dashboard too")
	})
}

// TestNamesFollowTheirPattern: a module or key name that cannot exist is
// refused with BAD_USER_INPUT by every read, the subscription included,
// and no watcher is kept for it.
func TestNamesFollowTheirPattern(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newService(t, Options{})
		for _, bad := range []string{"", "Finance", "fin ance", "ｆｉｎａｎｃｅ", strings.Repeat("a", 33), "a\x00"} {
			_, err := s.KPIs(t.Context(), bad)
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "KPIs(%q)", bad)
			_, err = s.History(t.Context(), bad, "revenue", time.Time{}, 10)
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "History(%q, revenue)", bad)
			_, err = s.History(t.Context(), "finance", bad, time.Time{}, 10)
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "History(finance, %q)", bad)
			_, err = s.WatchModule(t.Context(), bad)
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "WatchModule(%q)", bad)
		}
		assert.Empty(t, s.modules.Keys(), "no watcher for a refused module")
	})
}
