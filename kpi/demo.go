package kpi

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/switchboardhq/switchboard/models"
)

// demoKPI is one KPI of the demo feed and how it moves.
type demoKPI struct {
	module, key, label, unit string
	start, step, lo, hi      float64
	decimals                 int
}

// demoSet is four KPIs in each of the seed apps' modules.
var demoSet = []demoKPI{
	{"reports", "generated", "Reports generated", "", 1200, 15, 0, 1e6, 0},
	{"reports", "pending", "Pending reports", "", 40, 3, 0, 500, 0},
	{"reports", "avg_time", "Average build time", "s", 12, 0.6, 1, 60, 1},
	{"reports", "failures", "Failed builds", "%", 2.5, 0.3, 0, 20, 1},
	{"finance", "revenue", "Revenue today", "EUR", 48000, 900, 0, 1e7, 0},
	{"finance", "invoices_open", "Open invoices", "", 320, 6, 0, 5000, 0},
	{"finance", "margin", "Gross margin", "%", 38, 0.4, 0, 100, 1},
	{"finance", "cash", "Cash on hand", "kEUR", 2400, 25, 0, 1e6, 0},
	{"hr", "headcount", "Headcount", "", 412, 1, 0, 1e5, 0},
	{"hr", "open_roles", "Open roles", "", 23, 1, 0, 500, 0},
	{"hr", "absence", "Absence rate", "%", 3.1, 0.2, 0, 30, 1},
	{"hr", "satisfaction", "Satisfaction", "/5", 4.1, 0.05, 1, 5, 2},
	{"security", "incidents", "Open incidents", "", 4, 1, 0, 100, 0},
	{"security", "blocked", "Blocked attempts", "/h", 860, 40, 0, 1e6, 0},
	{"security", "patch_level", "Patched hosts", "%", 96, 0.4, 0, 100, 1},
	{"security", "mttr", "Mean time to resolve", "h", 5.5, 0.3, 0.1, 100, 1},
	{"elearning", "active", "Active learners", "", 1830, 25, 0, 1e6, 0},
	{"elearning", "completions", "Completions today", "", 140, 6, 0, 1e5, 0},
	{"elearning", "score", "Average score", "%", 78, 0.7, 0, 100, 1},
	{"elearning", "courses", "Courses live", "", 64, 1, 0, 1000, 0},
	{"rehab", "patients", "Patients in programme", "", 215, 2, 0, 1e5, 0},
	{"rehab", "sessions", "Sessions today", "", 380, 9, 0, 1e5, 0},
	{"rehab", "adherence", "Adherence", "%", 87, 0.6, 0, 100, 1},
	{"rehab", "wait_days", "Waiting time", "d", 9, 0.4, 0, 365, 1},
}

// whereDemo names the demo feed's panics.
const whereDemo = "kpi.demo"

// demoLock names the lead that runs the demo feed.
const demoLock = "switchboard.kpi-demo"

// StartDemo moves every demo KPI by a random walk each interval, through
// Record like any client, until ctx ends or Close. When several replicas
// share a database only the one holding the lead feeds; the others try
// again each minute, so the feed moves on when the leader stops.
func (s *Service) StartDemo(ctx context.Context, interval time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.opts.Panics.Recover(ctx, whereDemo, nil) // outside a step (see runDemo): the feed stops
		s.runDemo(ctx, interval)
	}()
}

func (s *Service) runDemo(ctx context.Context, interval time.Duration) {
	values := map[string]float64{}
	if kpis, err := s.db.KPIs(ctx, ""); err == nil {
		for _, k := range kpis {
			values[k.Module+"/"+k.Key] = k.Value
		}
	}
	lead, err := s.db.TryLead(ctx, demoLock)
	if err != nil {
		s.opts.Log.WarnContext(ctx, "demo feed: lead not taken", "err", err)
	}
	defer func() {
		if lead != nil {
			lead.Release()
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	retry := time.NewTicker(time.Minute)
	defer retry.Stop()
	for {
		if lead != nil && lead.Held(ctx) {
			s.opts.Panics.Do(ctx, whereDemo, func() { // a panic costs one step
				if _, err := s.Record(ctx, nil, demoStep(values), ""); err != nil && ctx.Err() == nil {
					s.opts.Log.WarnContext(ctx, "demo feed: record failed", "err", err)
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-tick.C:
		case <-retry.C:
			if lead == nil || !lead.Held(ctx) {
				if lead != nil {
					lead.Release()
				}
				lead, _ = s.db.TryLead(ctx, demoLock)
			}
		}
	}
}

// demoStep returns the next value of every demo KPI, updating values.
func demoStep(values map[string]float64) []*models.KPIInput {
	in := make([]*models.KPIInput, len(demoSet))
	for i, d := range demoSet {
		id := d.module + "/" + d.key
		v, ok := values[id]
		if !ok {
			v = d.start
		} else {
			v += (rand.Float64()*2 - 1) * d.step
		}
		p := math.Pow(10, float64(d.decimals))
		v = math.Round(min(max(v, d.lo), d.hi)*p) / p
		values[id] = v
		in[i] = &models.KPIInput{Module: d.module, Key: d.key, Value: v, Label: &d.label, Unit: &d.unit}
	}
	return in
}
