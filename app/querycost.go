package app

import (
	"context"
	"math"
	"slices"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// listSizeArguments are the arguments that say how many items a field
// returns: a field taking one costs what it selects times that many.
var listSizeArguments = []string{"first", "last", "limit"}

// unsizedList is the size counted for a list whose size argument is left
// out and has no default (presence's users: all of them).
const unsizedList = 100

// complexityLimit replaces gqlgen's extension.FixedComplexityLimit: it
// refuses an operation whose cost is over limit with
// COMPLEXITY_LIMIT_EXCEEDED, before it runs. A field costs one plus what it
// selects, as in gqlgen; but a field with a list-size argument (first, last
// or limit) costs what it selects times that size (its default when the
// argument is left out), so a page of a hundred costs a hundred times its
// items and no document fans out to more resolver calls than the limit.
// Fragments are costed once each, so fragments that spread each other
// twice over cost their real sum in linear time (gqlgen's calculation walks
// every spread again, exponentially).
type complexityLimit struct{ limit int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = complexityLimit{}

// ExtensionName names the extension: gqlgen's own name, so that
// extension.GetComplexityStats reads its figures.
func (complexityLimit) ExtensionName() string { return "ComplexityLimit" }

// Validate accepts every schema.
func (complexityLimit) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext costs the operation and refuses it over the limit.
func (c complexityLimit) MutateOperationContext(_ context.Context, op *graphql.OperationContext) *gqlerror.Error {
	cost := operationCost(op.Doc, op.Operation, op.Variables)
	op.Stats.SetExtension("ComplexityLimit", &extension.ComplexityStats{Complexity: cost, ComplexityLimit: c.limit})
	if cost > c.limit {
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", cost, c.limit)
		errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
		return err
	}
	return nil
}

// operationCost is an operation's cost (see complexityLimit), at least 0
// and at most math.MaxInt.
func operationCost(doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any) int {
	w := &costWalk{doc: doc, vars: vars, fragments: map[string]int{}}
	return w.set(op.SelectionSet)
}

// costWalk costs the selection sets of one operation with its variables.
type costWalk struct {
	doc       *ast.QueryDocument
	vars      map[string]any
	fragments map[string]int // fragments costed so far; -1 while one is
}

func (w *costWalk) set(set ast.SelectionSet) int {
	cost := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			cost = saturatedAdd(cost, w.field(s))
		case *ast.InlineFragment:
			cost = saturatedAdd(cost, w.set(s.SelectionSet))
		case *ast.FragmentSpread:
			cost = saturatedAdd(cost, w.fragment(s.Name))
		}
	}
	return cost
}

func (w *costWalk) field(f *ast.Field) int {
	selected := w.set(f.SelectionSet)
	if f.Definition == nil {
		return saturatedAdd(1, selected)
	}
	for _, arg := range f.Definition.Arguments {
		if !slices.Contains(listSizeArguments, arg.Name) {
			continue
		}
		// Left out or null, the resolver takes the default.
		v := f.ArgumentMap(w.vars)[arg.Name]
		if v == nil && arg.DefaultValue != nil {
			v, _ = arg.DefaultValue.Value(nil)
		}
		size := int64(unsizedList)
		if n, ok := wholeNumber(v); ok {
			size = max(n, 1)
		}
		return saturatedMul(max(selected, 1), size)
	}
	return saturatedAdd(1, selected)
}

func (w *costWalk) fragment(name string) int {
	if cost, ok := w.fragments[name]; ok {
		return max(cost, 0) // -1: a cycle, which validation refused
	}
	f := w.doc.Fragments.ForName(name)
	if f == nil {
		return 0
	}
	w.fragments[name] = -1
	cost := w.set(f.SelectionSet)
	w.fragments[name] = cost
	return cost
}

func saturatedAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

func saturatedMul(a int, b int64) int {
	if b > 0 && int64(a) > math.MaxInt64/b {
		return math.MaxInt
	}
	return int(int64(a) * b)
}
