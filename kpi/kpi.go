// Package kpi records KPI values and serves their live views: each
// module's KPI set (kpiUpdated) and the dashboard summary, both
// latest-value streams (see PRODUCT.md), plus the retention of samples and
// the demo feed.
//
// A recorded batch is committed first, then announced on the broker, so
// every replica sharing the broker refreshes its watchers from the
// database: the broker only says which module changed.
package kpi

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/store"
)

// topic is the broker topic of KPI changes; a payload is a module name.
const topic = "kpi"

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// DashboardInterval is the shortest time between two dashboard events
	// to one subscriber. Default 10s.
	DashboardInterval time.Duration
	// Retention is how long samples are kept. Default 7 days.
	Retention time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives warnings.
	Log *slog.Logger
}

// Service records KPIs and serves their live views.
type Service struct {
	db     *store.DB
	broker pubsub.Broker
	opts   Options

	mu        sync.Mutex
	modules   map[string]map[*live.Latest[*models.ModuleKPIs]]struct{}
	dashboard map[int]map[*live.Latest[*models.Dashboard]]struct{} // by topN
	dirty     bool                                                 // something changed since the last dashboard round

	// readMu serialises each read of the database with the delivery of
	// what it read, so that a watcher never ends with an older value
	// delivered after a newer one.
	readMu sync.Mutex

	done chan struct{}
	wg   sync.WaitGroup
}

// New returns a Service; Start runs its background work.
func New(db *store.DB, broker pubsub.Broker, opts Options) *Service {
	if opts.DashboardInterval <= 0 {
		opts.DashboardInterval = 10 * time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		db: db, broker: broker, opts: opts,
		modules:   make(map[string]map[*live.Latest[*models.ModuleKPIs]]struct{}),
		dashboard: make(map[int]map[*live.Latest[*models.Dashboard]]struct{}),
		done:      make(chan struct{}),
	}
}

// Start follows the broker's change announcements, sends the dashboards
// each interval, and prunes old samples every hour, until Close.
func (s *Service) Start(ctx context.Context) error {
	sub, err := s.broker.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	s.wg.Add(2)
	go s.follow(ctx, sub)
	go s.tick(ctx)
	return nil
}

// Close stops the background work.
func (s *Service) Close() {
	close(s.done)
	s.wg.Wait()
}

// Record validates and records a batch (see store.RecordKPIs), then
// announces the modules it changed.
func (s *Service) Record(ctx context.Context, in []*models.KPIInput) ([]*models.KPI, error) {
	if err := models.ValidateKPIInputs(in); err != nil {
		return nil, err
	}
	kpis, err := s.db.RecordKPIs(ctx, in, s.opts.Now())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range kpis {
		if seen[k.Module] {
			continue
		}
		seen[k.Module] = true
		if err := s.broker.Publish(context.WithoutCancel(ctx), topic, []byte(k.Module)); err != nil {
			// Committed already: watchers see it at the next change.
			s.opts.Log.WarnContext(ctx, "KPI change not announced", "module", k.Module, "err", err)
		}
	}
	return kpis, nil
}

// follow refreshes the watchers of each announced module, and of all
// modules after the broker dropped the subscription.
func (s *Service) follow(ctx context.Context, sub *pubsub.Subscription) {
	defer s.wg.Done()
	live.Follow(ctx, s.broker, topic, sub, s.done,
		func(payload []byte) { s.refresh(ctx, string(payload)) },
		func() { s.refreshAll(ctx) })
}

// refresh sends module's current set to its watchers and marks the
// dashboard dirty.
func (s *Service) refresh(ctx context.Context, module string) {
	s.mu.Lock()
	s.dirty = true
	n := len(s.modules[module])
	s.mu.Unlock()
	if n == 0 {
		return
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	kpis, err := s.db.KPIs(ctx, module)
	if err != nil {
		s.opts.Log.WarnContext(ctx, "KPI refresh failed", "module", module, "err", err)
		return
	}
	ev := &models.ModuleKPIs{Module: module, KPIs: kpis}
	s.mu.Lock()
	for w := range s.modules[module] {
		w.Set(ev)
	}
	s.mu.Unlock()
}

func (s *Service) refreshAll(ctx context.Context) {
	s.mu.Lock()
	modules := make([]string, 0, len(s.modules))
	for m := range s.modules {
		modules = append(modules, m)
	}
	s.mu.Unlock()
	for _, m := range modules {
		s.refresh(ctx, m)
	}
}

// WatchModule returns module's KPI set: the current one at once, then the
// new one after every change, until ctx ends.
func (s *Service) WatchModule(ctx context.Context, module string) (<-chan *models.ModuleKPIs, error) {
	w := live.NewLatest[*models.ModuleKPIs]()
	s.mu.Lock()
	if s.modules[module] == nil {
		s.modules[module] = make(map[*live.Latest[*models.ModuleKPIs]]struct{})
	}
	s.modules[module][w] = struct{}{}
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.modules[module], w)
		if len(s.modules[module]) == 0 {
			delete(s.modules, module)
		}
		s.mu.Unlock()
	}
	// Registered before reading, so a change committed meanwhile is not
	// lost (at worst it is sent twice), and read under readMu, so a refresh
	// running meanwhile cannot be overtaken by this older read.
	s.readMu.Lock()
	kpis, err := s.db.KPIs(ctx, module)
	if err != nil {
		s.readMu.Unlock()
		forget()
		return nil, err
	}
	w.Set(&models.ModuleKPIs{Module: module, KPIs: kpis})
	s.readMu.Unlock()
	go w.Run(ctx, forget)
	return w.C(), nil
}

// WatchDashboard returns the dashboard with topN movers: the current one at
// once, then a fresh one after changes, at most once per
// DashboardInterval; one computation serves every watcher of the same topN.
func (s *Service) WatchDashboard(ctx context.Context, topN int) (<-chan *models.Dashboard, error) {
	w := live.NewLatest[*models.Dashboard]()
	s.mu.Lock()
	if s.dashboard[topN] == nil {
		s.dashboard[topN] = make(map[*live.Latest[*models.Dashboard]]struct{})
	}
	s.dashboard[topN][w] = struct{}{}
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.dashboard[topN], w)
		if len(s.dashboard[topN]) == 0 {
			delete(s.dashboard, topN)
		}
		s.mu.Unlock()
	}
	// Registered first, computed under readMu: a round running meanwhile
	// either waits for this or already included this watcher.
	s.readMu.Lock()
	d, err := s.Dashboard(ctx, topN)
	if err != nil {
		s.readMu.Unlock()
		forget()
		return nil, err
	}
	w.Set(d)
	s.readMu.Unlock()
	go w.Run(ctx, forget)
	return w.C(), nil
}

// tick sends fresh dashboards each interval when something changed, and
// prunes samples every hour.
func (s *Service) tick(ctx context.Context) {
	defer s.wg.Done()
	round := time.NewTicker(s.opts.DashboardInterval)
	defer round.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	s.prune(ctx)
	for {
		select {
		case <-s.done:
			return
		case <-round.C:
			s.sendDashboards(ctx)
		case <-prune.C:
			s.prune(ctx)
		}
	}
}

func (s *Service) sendDashboards(ctx context.Context) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = false
	sizes := make([]int, 0, len(s.dashboard))
	for n := range s.dashboard {
		sizes = append(sizes, n)
	}
	s.mu.Unlock()
	if !dirty || len(sizes) == 0 {
		return
	}
	kpis, err := s.db.KPIs(ctx, "")
	if err != nil {
		s.opts.Log.WarnContext(ctx, "dashboard refresh failed", "err", err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return
	}
	for _, n := range sizes {
		d := Summarize(kpis, n, s.opts.Now())
		s.mu.Lock()
		for w := range s.dashboard[n] {
			w.Set(d)
		}
		s.mu.Unlock()
	}
}

func (s *Service) prune(ctx context.Context) {
	n, err := s.db.PruneKPISamples(ctx, s.opts.Now().Add(-s.opts.Retention))
	if err != nil {
		s.opts.Log.WarnContext(ctx, "KPI retention failed", "err", err)
		return
	}
	if n > 0 {
		s.opts.Log.InfoContext(ctx, "pruned KPI samples", "count", n, "retention", s.opts.Retention.String())
	}
}

// Dashboard computes the dashboard now.
func (s *Service) Dashboard(ctx context.Context, topN int) (*models.Dashboard, error) {
	kpis, err := s.db.KPIs(ctx, "")
	if err != nil {
		return nil, err
	}
	return Summarize(kpis, topN, s.opts.Now()), nil
}

// Summarize builds the dashboard of kpis (sorted by module and key): a card
// per module, and the topN KPIs with the largest relative change, largest
// first (ties by module and key).
func Summarize(kpis []*models.KPI, topN int, now time.Time) *models.Dashboard {
	d := &models.Dashboard{Modules: []*models.ModuleSummary{}, TopMovers: []*models.KPI{}, GeneratedAt: now.UTC().Truncate(time.Millisecond)}
	for _, k := range kpis {
		if n := len(d.Modules); n == 0 || d.Modules[n-1].Module != k.Module {
			d.Modules = append(d.Modules, &models.ModuleSummary{Module: k.Module})
		}
		m := d.Modules[len(d.Modules)-1]
		m.KPIs = append(m.KPIs, k)
		if k.UpdatedAt.After(m.UpdatedAt) {
			m.UpdatedAt = k.UpdatedAt
		}
	}
	var movers []*models.KPI
	for _, k := range kpis {
		if r := k.RelativeChange(); r != nil && *r != 0 {
			movers = append(movers, k)
		}
	}
	slices.SortStableFunc(movers, func(a, b *models.KPI) int {
		return cmp.Compare(math.Abs(*b.RelativeChange()), math.Abs(*a.RelativeChange()))
	})
	d.TopMovers = append(d.TopMovers, movers[:min(topN, len(movers))]...)
	return d
}
