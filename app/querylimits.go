package app

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// QueryLimits bound a GraphQL document before it runs: the parser's token
// limit bounds its size (and so any recursion over it), documentBounds the
// work of validating it, validation its depth and aliases, and
// complexityLimit its cost. None can be switched off: they are what keeps a
// malicious document from taking the process down.
type QueryLimits struct {
	Tokens     int // lexer tokens of a document
	Depth      int // nested fields; GraphiQL's introspection query needs 13
	Aliases    int // aliased fields in one document
	Complexity int // one per field, times list sizes where given (complexityLimit)
}

// defaultQueryLimits are the defaults of LIMIT_QUERY_*. The complexity
// limit lets every list's largest page through with every field of its
// items (a hundred notifications cost 1,300, kpiHistory's thousand samples
// 2,000), and keeps one document some three orders of magnitude below a
// million resolver calls.
var defaultQueryLimits = QueryLimits{Tokens: 10000, Depth: 15, Aliases: 30, Complexity: 5000}

// maxErrors is the most errors one response reports; a last one says how
// many more there were.
const maxErrors = 20

// queryRules returns gqlparser's rules plus the depth and alias limits, and,
// unless introspection is allowed, a rule refusing __schema and __type.
// Without suggestions, no error says "Did you mean …?" (gqlgen's
// SetDisableSuggestion must be set too: it swaps in its own rules for
// fields and leaf selections otherwise). Validation reports at most
// maxErrors errors.
func queryRules(introspection, suggestions bool, limits QueryLimits) *rules.Rules {
	maxQueryDepth, maxQueryAliases := limits.Depth, limits.Aliases
	r := rules.NewDefaultRules()
	if !suggestions {
		// gqlparser's rules without suggestions spare computing them, too.
		for _, rule := range []core.Rule{
			rules.FieldsOnCorrectTypeRuleWithoutSuggestions, rules.KnownArgumentNamesRuleWithoutSuggestions,
			rules.KnownTypeNamesRuleWithoutSuggestions, rules.ScalarLeafsRuleWithoutSuggestions,
			rules.ValuesOfCorrectTypeRuleWithoutSuggestions,
		} {
			r.RemoveRule(strings.TrimSuffix(rule.Name, "WithoutSuggestions"))
			r.AddRule(rule.Name, rule.RuleFunc)
		}
	}
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
	return boundedErrors(r, suggestions)
}

// boundedErrors wraps every rule of r so that validation reports at most
// maxErrors errors and one saying there were more, and, without
// suggestions, strips any " Did you mean …?" from their messages (queryRules
// uses gqlparser's rules without suggestions; this covers any rule that
// suggests and has no such twin). The errors are counted across the rules,
// so the rules returned serve one validation.
func boundedErrors(r *rules.Rules, suggestions bool) *rules.Rules {
	reported := 0
	wrapped := rules.NewRules()
	for name, rule := range r.GetInner() {
		wrapped.AddRule(name, func(observers *core.Events, addError core.AddErrFunc) {
			rule(observers, func(options ...core.ErrorOption) {
				reported++
				switch {
				case reported <= maxErrors:
					if !suggestions {
						options = append(options, func(err *gqlerror.Error) {
							err.Message, _, _ = strings.Cut(err.Message, " Did you mean ")
						})
					}
					addError(options...)
				case reported == maxErrors+1:
					addError(core.Message("more than %d errors; the others are not reported", maxErrors))
				}
			})
		})
	}
	return wrapped
}

// errorCap is a gqlgen extension that cuts every response's errors to
// maxErrors, and one more saying how many were left out (with the code of
// the first of them); validation stops at maxErrors itself (see
// boundedErrors), so this cuts what execution adds.
type errorCap struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
} = errorCap{}

// ExtensionName names the extension.
func (errorCap) ExtensionName() string { return "ErrorCap" }

// Validate accepts every schema.
func (errorCap) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse cuts the response's errors.
func (errorCap) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil || len(resp.Errors) <= maxErrors+1 {
		return resp
	}
	left := resp.Errors[maxErrors:]
	note := &gqlerror.Error{Message: fmt.Sprintf("%d more errors are not reported", len(left)), Extensions: map[string]any{}}
	if code, ok := left[0].Extensions["code"]; ok {
		note.Extensions["code"] = code
	}
	resp.Errors = append(resp.Errors[:maxErrors:maxErrors], note)
	return resp
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

// maxMergePairs bounds the pairs of selections that validation compares:
// gqlparser's OverlappingFieldsCanBeMerged compares every two fields of one
// response name that would merge into one result (and every two fragment
// spreads of a selection set), about 100 to 400 ns a pair. Ten thousand
// pairs are a few milliseconds; real documents have tens.
const maxMergePairs = 10000

// expansionFactor bounds a document with its fragments inlined where they
// are spread: at most this many times the token limit in selections.
const expansionFactor = 4

// documentBounds is a gqlgen extension that refuses, before it is
// validated, a document whose validation would be expensive: one that
// repeats fields or fragment spreads so that validation would compare more
// than maxMergePairs pairs of them (it compares them pairwise, in time that
// grows with the square of their number), or one whose fragments, inlined
// where they are spread, hold more than expansionFactor times the token
// limit in selections. Its check parses the document (in time linear in
// its size, which the token limit bounds) and walks it once, fragments
// inlined, stopping at the bound; documents already in the parsed cache
// passed it and are not checked again. A refused document gets
// GRAPHQL_VALIDATION_FAILED; one that does not parse is left to gqlgen,
// which reports why.
type documentBounds struct {
	tokens int
	parsed graphql.Cache[*ast.QueryDocument]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = documentBounds{}

// ExtensionName names the extension.
func (documentBounds) ExtensionName() string { return "DocumentBounds" }

// Validate accepts every schema.
func (documentBounds) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters refuses a document over the bounds.
func (b documentBounds) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	if params.Query == "" {
		return nil
	}
	if _, ok := b.parsed.Get(ctx, params.Query); ok {
		return nil
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: params.Query}, b.tokens)
	if err != nil {
		return nil
	}
	if msg := checkMerges(doc, expansionFactor*b.tokens); msg != "" {
		err := gqlerror.Errorf("%s", msg)
		errcode.Set(err, errcode.ValidationFailed)
		return err
	}
	return nil
}

// checkMerges walks doc's operations and fragments with fragments inlined
// where they are spread, as execution merges fields into results, counting
// the pairs of selections validation will compare; it says what is wrong
// when there are more than maxMergePairs of them or more than budget
// selections, and returns "" otherwise.
func checkMerges(doc *ast.QueryDocument, budget int) string {
	w := &mergeWalk{
		budget:    budget,
		fragments: make(map[string]*ast.FragmentDefinition, len(doc.Fragments)),
		names:     map[mergedName]*merged{},
		visiting:  map[string]bool{},
	}
	for _, f := range doc.Fragments {
		w.fragments[f.Name] = f
	}
	for _, op := range doc.Operations {
		w.set(op.SelectionSet, &merged{})
	}
	for _, f := range doc.Fragments {
		w.set(f.SelectionSet, &merged{})
	}
	switch {
	case w.budget < 0:
		return fmt.Sprintf("the document, with its fragments inlined where they are spread, holds more than %d selections", budget)
	case w.pairs > maxMergePairs:
		return fmt.Sprintf("the document repeats fields or fragment spreads too often: validating it would compare more than %d pairs of them", maxMergePairs)
	}
	return ""
}

// mergeWalk is checkMerges's walk.
type mergeWalk struct {
	budget    int // selections left to visit
	pairs     int // pairs of selections validation compares
	fragments map[string]*ast.FragmentDefinition
	names     map[mergedName]*merged
	visiting  map[string]bool // fragments being inlined (a cycle is validation's to report)
}

// merged is one place of a result, where selections merge: how many
// selections of its name merge there, and how many fragment spreads merge
// into the selection set below it.
type merged struct{ count, spreads int }

// mergedName is the place below parent for a response name.
type mergedName struct {
	parent *merged
	name   string
}

func (w *mergeWalk) set(set ast.SelectionSet, into *merged) {
	for _, sel := range set {
		if w.budget--; w.budget < 0 || w.pairs > maxMergePairs {
			return
		}
		switch s := sel.(type) {
		case *ast.Field:
			key := mergedName{into, cmp.Or(s.Alias, s.Name)}
			place := w.names[key]
			if place == nil {
				place = &merged{}
				w.names[key] = place
			}
			w.pairs += place.count // one more pair with each before it
			place.count++
			w.set(s.SelectionSet, place)
		case *ast.InlineFragment:
			w.set(s.SelectionSet, into)
		case *ast.FragmentSpread:
			w.pairs += into.spreads
			into.spreads++
			if f := w.fragments[s.Name]; f != nil && !w.visiting[s.Name] {
				w.visiting[s.Name] = true
				w.set(f.SelectionSet, into)
				delete(w.visiting, s.Name)
			}
		}
	}
}
