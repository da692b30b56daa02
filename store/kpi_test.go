package store_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// kpiT0 is the clock of the KPI tests: in a zone other than UTC and with
// nanoseconds, which the store drops.
var kpiT0 = time.Date(2025, 3, 30, 1, 59, 59, 123_456_789, time.FixedZone("CEST", 2*3600))

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// kpiIn is the value v of module/key, without label or unit.
func kpiIn(module, key string, v float64) *models.KPIInput {
	return &models.KPIInput{Module: module, Key: key, Value: v}
}

// recordKPIs records in at now and returns the KPIs as they now are.
func recordKPIs(tb testing.TB, db *store.DB, now time.Time, in ...*models.KPIInput) []*models.KPI {
	tb.Helper()
	out, _, err := db.RecordKPIs(context.Background(), in, now, nil)
	require.NoError(tb, err, "record %d values", len(in))
	return out
}

// allKPIs returns every current KPI.
func allKPIs(tb testing.TB, db *store.DB) []*models.KPI {
	tb.Helper()
	ks, err := db.KPIs(context.Background(), "")
	require.NoError(tb, err)
	return ks
}

// history returns the values of every sample of module/key, oldest first.
func history(tb testing.TB, db *store.DB, module, key string) []float64 {
	tb.Helper()
	ss, err := db.KPIHistory(context.Background(), module, key, kpiT0.Add(-24*time.Hour), 10_000)
	require.NoError(tb, err)
	return each(ss, func(s *models.KPISample) float64 { return s.Value })
}

// kpiNames returns "module/key" of each KPI, in order.
func kpiNames(ks []*models.KPI) []string {
	return each(ks, func(k *models.KPI) string { return k.Module + "/" + k.Key })
}

func TestRecordKPIs(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		steps := []struct {
			name string
			in   *models.KPIInput
			want models.KPI // Module, Key and UpdatedAt filled in below
		}{
			{
				name: "first value: the label is the key, no unit, no previous",
				in:   kpiIn("sales", "revenue", 100),
				want: models.KPI{Label: "revenue", Value: 100},
			},
			{
				name: "label and unit given",
				in:   &models.KPIInput{Module: "sales", Key: "revenue", Value: 120, Label: ptr("Revenue"), Unit: ptr("EUR")},
				want: models.KPI{Label: "Revenue", Unit: "EUR", Value: 120, Previous: ptr(100.0)},
			},
			{
				name: "neither given: both kept",
				in:   kpiIn("sales", "revenue", 90),
				want: models.KPI{Label: "Revenue", Unit: "EUR", Value: 90, Previous: ptr(120.0)},
			},
			{
				name: "the same value again, empty label: label kept",
				in:   &models.KPIInput{Module: "sales", Key: "revenue", Value: 90, Label: ptr("")},
				want: models.KPI{Label: "Revenue", Unit: "EUR", Value: 90, Previous: ptr(90.0)},
			},
			{
				name: "label changed, unit cleared",
				in:   &models.KPIInput{Module: "sales", Key: "revenue", Value: 95.5, Label: ptr("Net revenue"), Unit: ptr("")},
				want: models.KPI{Label: "Net revenue", Value: 95.5, Previous: ptr(90.0)},
			},
			{
				name: "negative and tiny",
				in:   kpiIn("sales", "revenue", -1e-9),
				want: models.KPI{Label: "Net revenue", Value: -1e-9, Previous: ptr(95.5)},
			},
		}
		var values []float64
		for i, s := range steps {
			now := kpiT0.Add(time.Duration(i) * time.Minute)
			want := s.want
			want.Module, want.Key, want.UpdatedAt = "sales", "revenue", now.UTC().Truncate(time.Millisecond)
			got := recordKPIs(t, db, now, s.in)
			require.Len(t, got, 1, s.name)
			assert.Equal(t, &want, got[0], s.name)
			assert.Equal(t, got, allKPIs(t, db), "%s: read back", s.name)
			values = append(values, s.in.Value)
		}
		assert.Equal(t, values, history(t, db, "sales", "revenue"), "one sample per value, even a repeated one")
	})
}

func TestRecordKPIsBatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		recordKPIs(t, db, kpiT0, kpiIn("hr", "headcount", 10))
		got := recordKPIs(t, db, kpiT0.Add(time.Second),
			kpiIn("sales", "revenue", 1), kpiIn("hr", "headcount", 11), kpiIn("finance", "cash", 2))
		assert.Equal(t, []string{"sales/revenue", "hr/headcount", "finance/cash"}, kpiNames(got), "returned in input order")
		assert.Equal(t, []*float64{nil, ptr(10.0), nil}, each(got, func(k *models.KPI) *float64 { return k.Previous }))
		assert.Equal(t, []float64{10, 11}, history(t, db, "hr", "headcount"))
		assert.Equal(t, []float64{1}, history(t, db, "sales", "revenue"))
		assert.Equal(t, []float64{2}, history(t, db, "finance", "cash"))
	})
}

// TestRecordKPIsIsAtomic makes the last value of a batch fail in the
// database (a NaN, which validation would have refused, violates the value
// column's constraint on SQLite and MySQL; PostgreSQL stores NaN, and
// refuses a label longer than its column instead) and checks that nothing
// of the batch stays.
func TestRecordKPIsIsAtomic(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		failing := func(module, key string) *models.KPIInput {
			in := kpiIn(module, key, math.NaN())
			if db.Dialect() == store.Postgres {
				in = kpiIn(module, key, 1)
				in.Label = ptr(strings.Repeat("l", 101))
			}
			return in
		}
		recordKPIs(t, db, kpiT0, kpiIn("sales", "revenue", 1), kpiIn("sales", "orders", 2))
		before := allKPIs(t, db)
		tests := []struct {
			name string
			in   []*models.KPIInput
		}{
			{name: "an update, then a failing update", in: []*models.KPIInput{
				kpiIn("sales", "revenue", 10), failing("sales", "orders")}},
			{name: "a new KPI, then a failing new one", in: []*models.KPIInput{
				kpiIn("hr", "headcount", 5), failing("hr", "open_roles")}},
			{name: "new and updated, then a failing update", in: []*models.KPIInput{
				{Module: "sales", Key: "revenue", Value: 11, Label: ptr("Revenue"), Unit: ptr("EUR")},
				kpiIn("hr", "headcount", 6), failing("sales", "orders"), kpiIn("sales", "refunds", 1)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, _, err := db.RecordKPIs(ctx, tt.in, kpiT0.Add(time.Hour), nil)
				require.Error(t, err, "a batch with a value the database refuses was stored")
				assert.Nil(t, got)
				assert.Equal(t, before, allKPIs(t, db), "KPIs changed by a failed batch")
				modules, err := db.Modules(ctx)
				require.NoError(t, err)
				assert.Equal(t, []string{"sales"}, modules)
				assert.Equal(t, []float64{1}, history(t, db, "sales", "revenue"))
				assert.Equal(t, []float64{2}, history(t, db, "sales", "orders"))
				assert.Empty(t, history(t, db, "hr", "headcount"))
			})
		}
		got := recordKPIs(t, db, kpiT0.Add(2*time.Hour), kpiIn("sales", "revenue", 3))
		assert.Equal(t, ptr(1.0), got[0].Previous, "the previous value is the last one committed")
	})
}

func TestKPIsAndModules(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		recordKPIs(t, db, kpiT0,
			kpiIn("sales", "revenue", 1), kpiIn("hr", "open_roles", 2), kpiIn("finance", "margin", 3),
			kpiIn("hr", "absence", 4), kpiIn("sales", "orders", 5), kpiIn("hr", "headcount", 6))
		// Names that sort differently by bytes and by MySQL's collation.
		recordKPIs(t, db, kpiT0, kpiIn("ops", "pa", 1), kpiIn("ops", "p_1", 2), kpiIn("ops", "p1", 3), kpiIn("ops", "p-1", 4),
			kpiIn("ops-2", "x", 5), kpiIn("ops_2", "x", 6), kpiIn("ops2", "x", 7))
		tests := []struct {
			module string
			want   []string
		}{
			{module: "", want: []string{"finance/margin", "hr/absence", "hr/headcount", "hr/open_roles",
				"ops/p-1", "ops/p1", "ops/p_1", "ops/pa", "ops-2/x", "ops2/x", "ops_2/x", "sales/orders", "sales/revenue"}},
			{module: "hr", want: []string{"hr/absence", "hr/headcount", "hr/open_roles"}},
			{module: "sales", want: []string{"sales/orders", "sales/revenue"}},
			{module: "rehab", want: []string{}},
			{module: "ops", want: []string{"ops/p-1", "ops/p1", "ops/p_1", "ops/pa"}},
			{module: "HR", want: []string{}},
			{module: "hr ", want: []string{}},
		}
		for _, tt := range tests {
			ks, err := db.KPIs(ctx, tt.module)
			require.NoError(t, err)
			assert.Equal(t, tt.want, kpiNames(ks), "KPIs(%q)", tt.module)
		}
		modules, err := db.Modules(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"finance", "hr", "ops", "ops-2", "ops2", "ops_2", "sales"}, modules, "in byte order, as in KPIs")
	})
}

func TestModulesOfAnEmptyStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		modules, err := db.Modules(t.Context())
		require.NoError(t, err)
		assert.Empty(t, modules)
		assert.Empty(t, allKPIs(t, db))
	})
}

func TestKPIHistory(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		// Instants the store keeps exactly (it keeps milliseconds), as clients
		// get them back.
		at := func(minute int) time.Time {
			return kpiT0.Add(time.Duration(minute) * time.Minute).Truncate(time.Millisecond)
		}
		for i := range 10 {
			// Other KPIs of the same module and of another module at the
			// same instants stay out of the history.
			recordKPIs(t, db, at(i), kpiIn("sales", "revenue", float64(i)),
				kpiIn("sales", "orders", float64(100+i)), kpiIn("finance", "revenue", float64(200+i)))
		}
		tests := []struct {
			name        string
			module, key string // sales/revenue when empty
			since       time.Time
			limit       int
			want        []float64
		}{
			{name: "everything", since: at(-1), limit: 100, want: []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
			{name: "the newest limit, oldest first", since: at(3), limit: 4, want: []float64{6, 7, 8, 9}},
			{name: "since is inclusive", since: at(7), limit: 100, want: []float64{7, 8, 9}},
			{name: "since in another zone", since: at(7).In(time.FixedZone("PST", -8*3600)), limit: 100, want: []float64{7, 8, 9}},
			{name: "a millisecond later", since: at(7).Add(time.Millisecond), limit: 100, want: []float64{8, 9}},
			{name: "within the millisecond after the first", since: at(0).Add(500 * time.Microsecond), limit: 100,
				want: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
			{name: "only the newest", since: at(0), limit: 1, want: []float64{9}},
			{name: "since after the last", since: at(10), limit: 100, want: []float64{}},
			{name: "names are exact", module: "Sales", key: "revenue ", since: at(-1), limit: 100, want: []float64{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				module, key := cmp.Or(tt.module, "sales"), cmp.Or(tt.key, "revenue")
				got, err := db.KPIHistory(ctx, module, key, tt.since, tt.limit)
				require.NoError(t, err)
				assert.Equal(t, tt.want, each(got, func(s *models.KPISample) float64 { return s.Value }))
				for _, s := range got {
					assert.Equal(t, "sales", s.Module)
					assert.Equal(t, "revenue", s.Key)
					assert.Equal(t, at(int(s.Value)).UTC().Truncate(time.Millisecond), s.At, "sample %v", s.Value)
				}
			})
		}

		// Values recorded at the same instant come back in the order they
		// were recorded.
		for _, v := range []float64{3, 1, 2} {
			recordKPIs(t, db, at(20), kpiIn("hr", "absence", v))
		}
		got, err := db.KPIHistory(ctx, "hr", "absence", at(20), 2)
		require.NoError(t, err)
		assert.Equal(t, []float64{1, 2}, each(got, func(s *models.KPISample) float64 { return s.Value }))
	})
}

func TestPruneKPISamples(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		t0 := kpiT0.Truncate(time.Millisecond) // kept exactly
		for i := range 10 {
			recordKPIs(t, db, t0.Add(time.Duration(i)*time.Hour), kpiIn("sales", "revenue", float64(i)), kpiIn("hr", "absence", float64(i)))
		}
		current := allKPIs(t, db)

		n, err := db.PruneKPISamples(ctx, t0.Add(4*time.Hour).In(time.UTC))
		require.NoError(t, err)
		assert.Equal(t, int64(8), n, "4 samples of each KPI are older than the cut")
		assert.Equal(t, []float64{4, 5, 6, 7, 8, 9}, history(t, db, "sales", "revenue"), "a sample at the cut stays")
		assert.Equal(t, []float64{4, 5, 6, 7, 8, 9}, history(t, db, "hr", "absence"))
		assert.Equal(t, current, allKPIs(t, db), "pruning samples changed the current values")

		n, err = db.PruneKPISamples(ctx, t0.Add(4*time.Hour))
		require.NoError(t, err)
		assert.Zero(t, n, "pruned twice")
	})
}

// TestRecordKPIsConcurrently records the same KPIs from two processes at
// once, starting before they exist, in batches that name them in opposite
// orders. No call may fail, every value must leave a sample, and the
// previous values must chain every value exactly once, the same way for
// both KPIs: the batches were serialised, none lost an update.
func TestRecordKPIsConcurrently(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		replicas := twoReplicas(t, dialect)
		const writers, perWriter = 4, 20
		got := make([][]*models.KPI, writers)
		together(writers, func(w int) {
			db := replicas[w%len(replicas)]
			for i := range perWriter {
				v := float64(w*1000 + i)
				in := []*models.KPIInput{kpiIn("sales", "revenue", v), kpiIn("sales", "orders", v)}
				if w%2 == 1 {
					slices.Reverse(in)
				}
				ks, _, err := db.RecordKPIs(context.Background(), in, time.Now(), nil)
				if !assert.NoError(t, err, "writer %d value %d", w, i) {
					return
				}
				got[w] = append(got[w], ks...)
			}
		})
		require.False(t, t.Failed(), "some batches failed")

		var recorded []float64
		for w := range writers {
			for i := range perWriter {
				recorded = append(recorded, float64(w*1000+i))
			}
		}
		var chains [][]float64
		for _, key := range []string{"revenue", "orders"} {
			var returned []*models.KPI
			for _, ks := range got {
				for _, k := range ks {
					if k.Key == key {
						returned = append(returned, k)
					}
				}
			}
			samples := history(t, replicas[0], "sales", key)
			assert.ElementsMatch(t, recorded, samples, "%s: one sample per value", key)
			chain := previousChain(t, returned)
			assert.ElementsMatch(t, recorded, chain, "%s: the previous values do not chain every value once", key)
			current, err := replicas[1].KPIs(t.Context(), "sales")
			require.NoError(t, err)
			for _, k := range current {
				if k.Key == key && len(chain) > 0 {
					assert.Equal(t, chain[len(chain)-1], k.Value, "%s: the current value is not the last of the chain", key)
				}
			}
			chains = append(chains, chain)
		}
		assert.Equal(t, chains[0], chains[1], "the two KPIs of each batch were updated in different orders")
	})
}

// previousChain orders the values of ks by their previous values, starting
// with the one that has none: v1, v2 (previous v1), v3 (previous v2)… It
// fails the test when that is not one chain through all of them.
func previousChain(t *testing.T, ks []*models.KPI) []float64 {
	t.Helper()
	next := map[float64]float64{}
	var chain []float64
	for _, k := range ks {
		if k.Previous == nil {
			require.Nil(t, chain, "two values without a previous one: %v and %v", chain, k.Value)
			chain = []float64{k.Value}
			continue
		}
		_, dup := next[*k.Previous]
		require.False(t, dup, "%v is the previous value of two values: an update was lost", *k.Previous)
		next[*k.Previous] = k.Value
	}
	require.NotNil(t, chain, "every value has a previous one")
	for {
		v, ok := next[chain[len(chain)-1]]
		if !ok {
			break
		}
		require.Less(t, len(chain), len(ks), "the previous values form a cycle")
		chain = append(chain, v)
	}
	require.Len(t, chain, len(ks), "the chain breaks after %s", fmt.Sprint(chain))
	return chain
}
