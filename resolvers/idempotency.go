package resolvers

import (
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql"

	"github.com/switchboardhq/switchboard/models"
)

// IdempotencyKeyHeader is the HTTP request header that carries the
// idempotency key of a request's one mutation (see Mutation in
// schema.graphqls), as Stripe and the IETF draft name it.
const IdempotencyKeyHeader = "Idempotency-Key"

// callerKey returns the caller's idempotency key for the mutation
// being resolved, checked by models.IdempotencyKey: its idempotencyKey
// argument arg, or the Idempotency-Key header of the HTTP request that
// carries it (the transport puts the request's headers in the operation's
// context; over WebSocket there are none), or "" when neither is given.
// Both given and different, or a header on a request with more than one
// mutation, are models.BadUserInput.
func callerKey(ctx context.Context, arg *string) (string, error) {
	header, err := keyHeader(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case arg != nil && header != "" && *arg != header:
		return "", models.Errorf(models.BadUserInput, "the idempotencyKey argument and the %s header differ; give one key", IdempotencyKeyHeader)
	case arg != nil:
		return models.IdempotencyKey(*arg)
	case header != "":
		return models.IdempotencyKey(header)
	}
	return "", nil
}

// keyHeader returns the Idempotency-Key header of the operation's HTTP
// request ("" without one), unquoted (the IETF draft sends the key as a
// quoted string, Stripe without quotes), once it made sure that the
// request is this one mutation.
func keyHeader(ctx context.Context) (string, error) {
	if !graphql.HasOperationContext(ctx) {
		return "", nil
	}
	oc := graphql.GetOperationContext(ctx)
	values := oc.Headers.Values(IdempotencyKeyHeader)
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", models.Errorf(models.BadUserInput, "give one %s header, not %d", IdempotencyKeyHeader, len(values))
	}
	fields := 0
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Mutation"}) {
		if !strings.HasPrefix(f.Name, "__") {
			fields++
		}
	}
	if fields != 1 {
		return "", models.Errorf(models.BadUserInput,
			"the %s header is the key of a request's one mutation, and this request has %d: give each its idempotencyKey argument instead",
			IdempotencyKeyHeader, fields)
	}
	key := strings.TrimSpace(values[0])
	if len(key) >= 2 && strings.HasPrefix(key, `"`) && strings.HasSuffix(key, `"`) {
		key = key[1 : len(key)-1]
	}
	if key == "" {
		return "", models.Errorf(models.BadUserInput, "the %s header is empty", IdempotencyKeyHeader)
	}
	return key, nil
}
