package app

import (
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// QueryLimits bound a GraphQL document before it runs: the parser's token
// limit bounds its size (and so any recursion over it), validation its
// depth and aliases, and gqlgen's complexity extension its cost. None can
// be switched off: they are what keeps a malicious document from taking the
// process down.
type QueryLimits struct {
	Tokens     int // lexer tokens of a document
	Depth      int // nested fields; GraphiQL's introspection query needs 13
	Aliases    int // aliased fields in one document
	Complexity int // gqlgen's complexity: one per field, times list sizes where given
}

// defaultQueryLimits are the defaults of LIMIT_QUERY_*.
var defaultQueryLimits = QueryLimits{Tokens: 10000, Depth: 15, Aliases: 30, Complexity: 1000}

// queryRules returns gqlparser's rules plus the depth and alias limits, and,
// unless introspection is allowed, a rule refusing __schema and __type.
func queryRules(introspection bool, limits QueryLimits) *rules.Rules {
	maxQueryDepth, maxQueryAliases := limits.Depth, limits.Aliases
	r := rules.NewDefaultRules()
	if !introspection {
		// Refused here, before execution, with GRAPHQL_VALIDATION_FAILED:
		// gqlgen's executor would otherwise fail the field with a plain
		// error, which the presenter reports as INTERNAL and logs.
		// __typename stays: clients add it to every selection.
		r.AddRule("NoIntrospection", func(observers *core.Events, addError core.AddErrFunc) {
			refused := false // once per document
			observers.OnField(func(_ *core.Walker, f *ast.Field) {
				if (f.Name == "__schema" || f.Name == "__type") && !refused {
					refused = true
					addError(core.Message("introspection is disabled on this server; the schema is at /schema.graphql"), core.At(f.Position))
				}
			})
		})
	}
	r.AddRule("MaxDepth", func(observers *core.Events, addError core.AddErrFunc) {
		observers.OnOperation(func(walker *core.Walker, op *ast.OperationDefinition) {
			d := &depth{doc: walker.Document, memo: map[string]int{}, visiting: map[string]bool{}}
			if n := d.of(op.SelectionSet); n > maxQueryDepth {
				addError(core.Message("the operation nests %d fields deep; the limit is %d", n, maxQueryDepth), core.At(op.Position))
			}
		})
	})
	r.AddRule("MaxAliases", func(observers *core.Events, addError core.AddErrFunc) {
		aliases := 0
		observers.OnField(func(_ *core.Walker, f *ast.Field) {
			if f.Alias != "" && f.Alias != f.Name {
				if aliases++; aliases == maxQueryAliases+1 {
					addError(core.Message("the document uses more than %d aliases", maxQueryAliases), core.At(f.Position))
				}
			}
		})
	})
	return r
}

// depth measures how deep a selection set nests fields, following fragment
// spreads once each (memoised, so a fragment used many times costs one
// walk; a cycle counts as no depth, and NoFragmentCycles reports it).
type depth struct {
	doc      *ast.QueryDocument
	memo     map[string]int
	visiting map[string]bool
}

func (d *depth) of(set ast.SelectionSet) int {
	deepest := 0
	for _, sel := range set {
		n := 0
		switch s := sel.(type) {
		case *ast.Field:
			n = 1 + d.of(s.SelectionSet)
		case *ast.InlineFragment:
			n = d.of(s.SelectionSet)
		case *ast.FragmentSpread:
			n = d.fragment(s.Name)
		}
		deepest = max(deepest, n)
	}
	return deepest
}

func (d *depth) fragment(name string) int {
	if n, ok := d.memo[name]; ok {
		return n
	}
	f := d.doc.Fragments.ForName(name)
	if f == nil || d.visiting[name] {
		return 0
	}
	d.visiting[name] = true
	n := d.of(f.SelectionSet)
	delete(d.visiting, name)
	d.memo[name] = n
	return n
}
