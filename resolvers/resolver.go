// Package resolvers maps the GraphQL API of schema.graphqls onto the domain:
// it checks who is calling, validates input with the rules in models, calls
// the store, and announces what it committed on the live feeds. The
// *.resolvers.go files are kept by gqlgen (follow-schema layout); this file
// is the hand-written root that main wires up.
package resolvers

import (
	"log/slog"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/chat"
	"github.com/switchboardhq/switchboard/kpi"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/notify"
	"github.com/switchboardhq/switchboard/ratelimit"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/stream"
)

// Resolver is the root of the GraphQL resolvers and holds their
// dependencies. Every field is required unless its comment says otherwise.
type Resolver struct {
	DB            *store.DB
	Tokens        *auth.Tokens
	Statuses      *stream.Feed[*models.Status]
	Messages      *stream.Feed[*models.Message]
	Chat          *chat.Hub
	KPIs          *kpi.Service
	Notifications *notify.Service
	Log           *slog.Logger

	// MessageRate, TypingRate and StatusRate limit how fast one user posts
	// messages, sends typing events and posts statuses (nil: no limit).
	MessageRate, TypingRate, StatusRate *ratelimit.Keyed
	// GuestSignIn allows signIn(name).
	GuestSignIn bool
	// GuestTTL is how long a guest token is valid.
	GuestTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	loadersOnce sync.Once
	batch       *loaders
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
