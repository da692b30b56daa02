// Package resolvers maps the GraphQL API of schema.graphqls onto the domain
// services: each resolver parses its arguments (ids, cursors, page sizes),
// checks who is calling (auth.Require, roles), calls a service and maps the
// result (relay connections, for instance). Rules, storage and live
// delivery live in the services. The *.resolvers.go files are kept by
// gqlgen (follow-schema layout); this file is the hand-written root that
// app wires up.
package resolvers

import (
	"sync"

	"github.com/switchboardhq/switchboard/accounts"
	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/kpi"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/panics"
	"github.com/switchboardhq/switchboard/statuses"
)

// Resolver is the root of the GraphQL resolvers and holds the services
// they call, every one required, and the rules that are settings.
type Resolver struct {
	Accounts      *accounts.Service
	Statuses      *statuses.Service
	Chat          *chat.Service
	KPIs          *kpi.Service
	Notifications *notify.Service

	// KPIPublic lets anonymous callers read the KPIs and the dashboard
	// (KPI_PUBLIC); without it, they need a token.
	KPIPublic bool

	// Panics recovers the panics of the batch fetches the room-list
	// watchers share (their loads fail); nil logs them to slog.Default.
	// (A resolver's own panic is gqlgen's to recover: see Recover.)
	Panics *panics.Guard

	loadersOnce sync.Once
	batch       *loaders
}
