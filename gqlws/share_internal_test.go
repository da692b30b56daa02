package gqlws

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

type callerKey struct{}

// TestShareKey checks the sharing rules: the resume cursor never splits a
// group, anything else that can change a result does, and results are only
// shared between callers who may see the same data.
func TestShareKey(t *testing.T) {
	noRecorder := func(ctx context.Context, _, _ func(int64)) context.Context { return ctx }
	newT := func(opts Options) *Transport {
		tr := New(opts)
		t.Cleanup(tr.Shutdown)
		return tr
	}
	scoped := newT(Options{
		Positions:    noRecorder,
		PublicFields: []string{"statusPosted"},
		Scope:        func(ctx context.Context) string { s, _ := ctx.Value(callerKey{}).(string); return s },
	})
	unscoped := newT(Options{Positions: noRecorder, PublicFields: []string{"statusPosted"}})
	noPositions := newT(Options{PublicFields: []string{"statusPosted"}})

	const public = `subscription($a: ID, $n: Int) { statusPosted(after: $a) { id text @include(if: true) } }`
	const private = `subscription($a: ID) { messageAdded(roomId: "1", after: $a) { id } }`
	rc := func(query string, vars map[string]any) *graphql.OperationContext {
		doc, err := parser.ParseQuery(&ast.Source{Input: query})
		require.NoError(t, err)
		return &graphql.OperationContext{RawQuery: query, Variables: vars, Operation: doc.Operations[0]}
	}
	as := func(caller string) context.Context {
		return context.WithValue(context.Background(), callerKey{}, caller)
	}
	key := func(tr *Transport, caller, query string, vars map[string]any) (string, bool) {
		share, ok := tr.shareKey(as(caller), rc(query, vars))
		if ok {
			assert.Equal(t, "a", share.afterVar, "the variable holding the cursor is found")
		}
		return share.key, ok
	}

	k1, ok1 := key(scoped, "ann", public, map[string]any{"a": "3"})
	k2, ok2 := key(scoped, "bob", public, map[string]any{"a": "900"})
	require.True(t, ok1 && ok2)
	assert.Equal(t, k1, k2, "a public field is shared between callers, whatever their cursor")
	k3, _ := key(scoped, "ann", public, map[string]any{"a": "3", "n": 2})
	assert.NotEqual(t, k1, k3, "another variable is another result")

	plain, okPlain := scoped.shareKey(as("ann"), rc("subscription Feed($n: Int) {\n  statusPosted { id\n text @include(if: true) } }", nil))
	require.True(t, okPlain)
	assert.Equal(t, k1, plain.key, "the same selection without the cursor, named and laid out otherwise, is the same result")
	aliased, _ := scoped.shareKey(as("ann"), rc(`subscription { s: statusPosted { id text @include(if: true) } }`, nil))
	assert.NotEqual(t, k1, aliased.key, "another alias is another result")
	fewer, _ := scoped.shareKey(as("ann"), rc(`subscription { statusPosted { id } }`, nil))
	assert.NotEqual(t, k1, fewer.key, "another selection is another result")

	p1, ok1 := key(scoped, "ann", private, map[string]any{"a": "1"})
	p2, ok2 := key(scoped, "ann", private, map[string]any{"a": "7"})
	p3, ok3 := key(scoped, "bob", private, map[string]any{"a": "1"})
	require.True(t, ok1 && ok2 && ok3)
	assert.Equal(t, p1, p2, "one caller's subscriptions share")
	assert.NotEqual(t, p1, p3, "a non-public field is never shared between callers")

	spanning := newT(Options{
		Positions:      noRecorder,
		Audiences:      func(ctx context.Context, _ func(string)) context.Context { return ctx },
		SpanningFields: []string{"notificationAdded"},
		Scope:          scoped.opts.Scope,
	})
	const inbox = `subscription($a: ID) { notificationAdded(after: $a) { id } }`
	s1, ok1 := key(spanning, "ann", inbox, map[string]any{"a": "1"})
	s2, ok2 := key(spanning, "bob", inbox, map[string]any{"a": "9"})
	require.True(t, ok1 && ok2)
	assert.Equal(t, s1, s2, "a spanning field's group takes every scope")
	share, _ := spanning.shareKey(as("bob"), rc(inbox, nil))
	assert.Equal(t, "bob", share.scope, "each member keeps its own scope")
	assert.Equal(t, eventTurn, share.turn, "an event's fan-out goes first")
	following := newT(Options{Positions: noRecorder, Scope: scoped.opts.Scope, FollowingFields: []string{"messageAdded"}})
	share, _ = following.shareKey(as("bob"), rc(private, map[string]any{"a": "1"}))
	assert.Equal(t, latestTurn, share.turn, "a following event's fan-out goes after the others'")
	_, ok := key(spanning, "", inbox, map[string]any{"a": "1"})
	assert.False(t, ok, "a caller without a scope shares nothing")
	s3, _ := key(spanning, "ann", private, map[string]any{"a": "1"})
	assert.Equal(t, p1, s3, "other fields keep to their scope")

	_, ok = key(unscoped, "ann", private, map[string]any{"a": "1"})
	assert.False(t, ok, "without a Scope, only public fields are shared")
	_, ok = key(scoped, "ann", `subscription { statusPosted(after: "5") { id } }`, nil)
	assert.False(t, ok, "a literal cursor is part of the document: run alone")
	_, ok = key(noPositions, "ann", public, map[string]any{"a": "1"})
	assert.False(t, ok, "without position reports nothing can join a group")
	_, ok = key(scoped, "ann", `query { statuses { edges { cursor } } }`, nil)
	assert.False(t, ok, "only subscriptions are shared")
}

// TestJoinAfterTheEnd: an operation that ended (its connection closed, its
// client stopped it) while its private execution was on its way into its
// group leaves the group at once: a group started for it ends, and no
// group keeps a member nobody will remove.
func TestJoinAfterTheEnd(t *testing.T) {
	tr := New(Options{})
	t.Cleanup(tr.Shutdown)
	stopped := false
	g := &group{transport: tr, key: "k", cancel: func() { stopped = true }, pos: &positions{}, members: make(map[*operation]struct{})}
	tr.groups["k"] = g
	op := &operation{}
	op.end()
	g.join(op, 0)
	assert.Empty(t, g.members, "it left at once")
	assert.True(t, stopped, "its group, empty, stopped its leader")
	assert.Zero(t, tr.Groups())
}
