package resolvers

import (
	"context"
	"slices"
	"strings"

	"github.com/switchboardhq/switchboard/auth"
	"github.com/switchboardhq/switchboard/models"
)

// requireRole returns the caller if they hold one of roles: no token is
// UNAUTHENTICATED, a token without the role FORBIDDEN.
func (r *Resolver) requireRole(ctx context.Context, roles ...models.Role) (*models.Principal, error) {
	p, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(roles, p.Has) {
		return p, nil
	}
	names := make([]string, len(roles))
	for i, role := range roles {
		names[i] = string(role)
	}
	return nil, models.Errorf(models.Forbidden, "this needs the role %s", strings.Join(names, " or "))
}

// mayReadKPIs refuses anonymous callers the KPIs and the dashboard
// (UNAUTHENTICATED) unless they are public (Resolver.KPIPublic).
func (r *Resolver) mayReadKPIs(ctx context.Context) error {
	if r.KPIPublic {
		return nil
	}
	if _, ok := auth.PrincipalFrom(ctx); !ok {
		return models.Errorf(models.Unauthenticated, "sign in to see the KPIs and the dashboard")
	}
	return nil
}

// maxTopMovers is the most top movers a dashboard lists.
const maxTopMovers = 20

// topMovers validates a dashboard's topN argument (default 4).
func topMovers(n *int) (int, error) {
	if n == nil {
		return 4, nil
	}
	if *n < 0 || *n > maxTopMovers {
		return 0, models.Errorf(models.BadUserInput, "topN must be between 0 and %d (got %d)", maxTopMovers, *n)
	}
	return *n, nil
}
