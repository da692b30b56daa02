// Package kpi records KPI values and serves their live views: each
// module's KPI set (kpiUpdated) and the dashboard summary, both
// latest-value streams (README.md, "The delivery promise"), plus the
// retention of samples and the demo feed.
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
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/live"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/panics"
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
	// Panics recovers the panics of the service's goroutines: following the
	// broker (it subscribes again after a back-off and refreshes every
	// watcher), a dashboard or pruning round, a demo feed step, a watcher.
	// Nil logs them to slog.Default.
	Panics *panics.Guard
}

// Service records KPIs and serves their live views.
type Service struct {
	db     *store.DB
	broker pubsub.Broker
	opts   Options

	modules    live.Watchers[string, *models.ModuleKPIs]
	dashboards live.Watchers[int, *models.Dashboard] // by topN
	dirty      atomic.Bool                           // something changed since the last dashboard round

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
	s := &Service{
		db: db, broker: broker, opts: opts,
		done: make(chan struct{}),
	}
	s.modules.Panics, s.dashboards.Panics = opts.Panics, opts.Panics
	return s
}

// Start follows the broker's change announcements, sends the dashboards
// each interval, and prunes old samples every hour, until Close.
func (s *Service) Start(ctx context.Context) {
	// A broker down at start is not fatal: Follow keeps trying.
	sub, _ := s.broker.Subscribe(ctx, topic)
	s.wg.Add(2)
	go s.follow(ctx, sub)
	go s.tick(ctx)
}

// Close stops the background work.
func (s *Service) Close() {
	close(s.done)
	s.wg.Wait()
}

// Record validates and records a batch (see store.RecordKPIs), then
// announces the modules it changed.
//
// key ("": none) is by's idempotency key (checked by
// models.IdempotencyKey): a Record with a key by already used for a batch
// within models.IdempotencyWindow returns the KPIs that batch returned and
// records and announces nothing, on every replica; the same key with
// another batch is models.BadUserInput. by may be nil only without a key
// (the demo feed).
func (s *Service) Record(ctx context.Context, by *models.User, in []*models.KPIInput, key string) ([]*models.KPI, error) {
	if err := models.ValidateKPIInputs(in); err != nil {
		return nil, err
	}
	once, err := models.NewIdempotency(by, models.OpRecordKPIs, key, in)
	if err != nil {
		return nil, err
	}
	var first []*models.KPI
	if replayed, err := s.db.Replay(ctx, once, s.opts.Now(), &first); replayed || err != nil {
		return first, err
	}
	kpis, replayed, err := s.db.RecordKPIs(ctx, in, s.opts.Now(), once)
	if err != nil || replayed {
		return kpis, err
	}
	seen := map[string]bool{}
	for _, k := range kpis {
		if seen[k.Module] {
			continue
		}
		seen[k.Module] = true
		if err := s.broker.Publish(context.WithoutCancel(ctx), topic, []byte(k.Module)); err != nil {
			// Committed already: this replica's watchers get it now, the
			// others' when their broker subscription comes back.
			s.opts.Log.Log(ctx, pubsub.AnnouncementLevel(err), "KPI change not announced", "module", k.Module, "err", err)
			s.refresh(context.WithoutCancel(ctx), k.Module)
		}
	}
	return kpis, nil
}

// follow refreshes the watchers of each announced module, and of all
// modules after the broker dropped the subscription.
func (s *Service) follow(ctx context.Context, sub *pubsub.Subscription) {
	defer s.wg.Done()
	pubsub.Follower{
		Broker: s.broker, Topic: topic,
		Apply:  func(payload []byte) { s.refresh(ctx, string(payload)) },
		Missed: func() { s.refreshAll(ctx) },
		Panics: s.opts.Panics, Where: "kpi.follower",
	}.Run(ctx, sub, s.done)
}

// refresh sends module's current set to its watchers and marks the
// dashboard dirty.
func (s *Service) refresh(ctx context.Context, module string) {
	s.dirty.Store(true)
	if err := s.modules.Refresh(module, s.readModule(ctx, module)); err != nil {
		s.opts.Log.WarnContext(ctx, "KPI refresh failed", "module", module, "err", err)
	}
}

// refreshAll refreshes every watched module and the dashboards, after
// announcements may have been lost.
func (s *Service) refreshAll(ctx context.Context) {
	s.dirty.Store(true)
	for _, m := range s.modules.Keys() {
		s.refresh(ctx, m)
	}
}

// readModule reads module's KPI set.
func (s *Service) readModule(ctx context.Context, module string) func() (*models.ModuleKPIs, error) {
	return func() (*models.ModuleKPIs, error) {
		kpis, err := s.db.KPIs(ctx, module)
		if err != nil {
			return nil, err
		}
		return &models.ModuleKPIs{Module: module, KPIs: kpis}, nil
	}
}

// Modules returns the names of the modules that have KPIs, sorted.
func (s *Service) Modules(ctx context.Context) ([]string, error) { return s.db.Modules(ctx) }

// KPIs returns the current KPIs of module, by key (none for a module
// without KPIs). A module name that does not follow models.KPINamePattern
// is a BadUserInput error.
func (s *Service) KPIs(ctx context.Context, module string) ([]*models.KPI, error) {
	if err := models.KPIName("module", module); err != nil {
		return nil, err
	}
	return s.db.KPIs(ctx, module)
}

// History returns the newest limit samples of a KPI at or after since,
// oldest first: the values behind a chart. A module or key name that does
// not follow models.KPINamePattern is a BadUserInput error.
func (s *Service) History(ctx context.Context, module, key string, since time.Time, limit int) ([]*models.KPISample, error) {
	if err := cmp.Or(models.KPIName("module", module), models.KPIName("key", key)); err != nil {
		return nil, err
	}
	return s.db.KPIHistory(ctx, module, key, since, limit)
}

// WatchModule returns module's KPI set: the current one at once, then the
// new one after every change, until ctx ends. A module name that does not
// follow models.KPINamePattern is a BadUserInput error, so no watcher is
// kept (nor a broker topic followed) for a module that cannot exist.
func (s *Service) WatchModule(ctx context.Context, module string) (<-chan *models.ModuleKPIs, error) {
	if err := models.KPIName("module", module); err != nil {
		return nil, err
	}
	return s.modules.Watch(ctx, module, s.readModule(ctx, module))
}

// WatchDashboard returns the dashboard with topN movers: the current one at
// once, then a fresh one after changes, at most once per
// DashboardInterval; one computation serves every watcher of the same topN.
func (s *Service) WatchDashboard(ctx context.Context, topN int) (<-chan *models.Dashboard, error) {
	return s.dashboards.Watch(ctx, topN, func() (*models.Dashboard, error) { return s.Dashboard(ctx, topN) })
}

// whereTick names the panics of the dashboard and pruning rounds: a panic
// ends only its round.
const whereTick = "kpi.tick"

// tick sends fresh dashboards each interval when something changed, and
// prunes samples every hour.
func (s *Service) tick(ctx context.Context) {
	defer s.wg.Done()
	round := time.NewTicker(s.opts.DashboardInterval)
	defer round.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	s.opts.Panics.Do(ctx, whereTick, func() { s.prune(ctx) })
	for {
		select {
		case <-s.done:
			return
		case <-round.C:
			s.opts.Panics.Do(ctx, whereTick, func() { s.sendDashboards(ctx) })
		case <-prune.C:
			s.opts.Panics.Do(ctx, whereTick, func() { s.prune(ctx) })
		}
	}
}

// sendDashboards sends every dashboard size in use a fresh dashboard when
// something changed, from one read of the KPIs.
func (s *Service) sendDashboards(ctx context.Context) {
	if !s.dirty.Swap(false) {
		return
	}
	err := s.dashboards.RefreshAll(func(sizes []int) (map[int]*models.Dashboard, error) {
		kpis, err := s.db.KPIs(ctx, "")
		if err != nil {
			return nil, err
		}
		out := make(map[int]*models.Dashboard, len(sizes))
		for _, n := range sizes {
			out[n] = Summarize(kpis, n, s.opts.Now())
		}
		return out, nil
	})
	if err != nil {
		s.opts.Log.WarnContext(ctx, "dashboard refresh failed", "err", err)
		s.dirty.Store(true)
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
