package app

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/switchboardhq/switchboard/graph"
)

// schema is the server's executable schema, without resolvers: enough to
// validate and cost documents.
var schema = graph.NewExecutableSchema(graph.Config{})

// validated parses and validates query as the server does in development.
func validated(t testing.TB, query string) *ast.QueryDocument {
	t.Helper()
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, defaultQueryLimits.Tokens)
	require.NoError(t, err, query)
	require.Empty(t, validator.ValidateWithRules(schema.Schema(), doc, queryRules(true, true, defaultQueryLimits)), query)
	return doc
}

// repeated is n copies of s, each with %d replaced by its index.
func repeated(s string, n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.ReplaceAll(s, "%d", fmt.Sprint(i)))
	}
	return b.String()
}

// TestComplexityCountsListSizes: a field costs one plus what it selects,
// and a field with first, last or limit what it selects times that many
// (its default when left out or null), with variables, fragments and
// saturation.
func TestComplexityCountsListSizes(t *testing.T) {
	page := `edges { node { id text createdAt author { id name } } }` // 1 + (1 + 3 + 3) = 8 an item
	cases := []struct {
		name, query string
		vars        map[string]any
		want        int
	}{
		{"plain fields", `{ me { id name } }`, nil, 3},
		{"the default page", `{ statuses { ` + page + ` } }`, nil, 20 * 8},
		{"a page of 100", `{ statuses(first: 100) { ` + page + ` } }`, nil, 100 * 8},
		{"a size from a variable", `query($n: Int) { statuses(first: $n) { ` + page + ` } }`, map[string]any{"n": int64(5)}, 5 * 8},
		{"a null variable takes the default", `query($n: Int) { statuses(first: $n) { ` + page + ` } }`, map[string]any{"n": nil}, 20 * 8},
		{"last", `{ messages(roomId: "1", last: 10) { edges { node { id } } } }`, nil, 10 * 3},
		{"limit", `{ kpiHistory(module: "hr", key: "x", limit: 1000) { value at } }`, nil, 1000 * 2},
		{"a size of 0 counts 1", `{ statuses(first: 0) { ` + page + ` } }`, nil, 8},
		{"the argument's default", `subscription { presence(roomId: "1") { count users { id name } } }`, nil, 1 + 1 + 50*2},
		{"a fragment, spread twice", `{ a: statuses(first: 2) { ...P } b: statuses(first: 3) { ...P } } fragment P on StatusConnection { pageInfo { hasNextPage } }`, nil, 2*2 + 3*2},
		{"large sizes", `{ ` + repeated(`a%d: statuses(first: 2147483647) { edges { node { author { name } } } } `, 30) + `}`, nil, 30 * 2147483647 * 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := validated(t, c.query)
			assert.Equal(t, c.want, operationCost(doc, doc.Operations[0], c.vars))
		})
	}
}

// TestComplexityRefusesWhatUsedToPass: thirty aliased pages of a hundred
// statuses with their authors (3,000 statuses, some 24,000 resolver calls)
// cost 330 by gqlgen's count, well under the limit; counted by list size,
// they are far over it.
func TestComplexityRefusesWhatUsedToPass(t *testing.T) {
	doc := validated(t, `{ `+repeated(`a%d: statuses(first: 100) { edges { node { id text createdAt author { id name } } } } `, 30)+`}`)
	op := doc.Operations[0]
	before := complexity.Calculate(context.Background(), schema, op, nil)
	now := operationCost(doc, op, nil)
	t.Logf("gqlgen's complexity %d, by list size %d; the limit %d", before, now, defaultQueryLimits.Complexity)
	assert.Less(t, before, defaultQueryLimits.Complexity, "it used to pass")
	assert.Greater(t, now, defaultQueryLimits.Complexity, "it is refused now")
}

// TestFragmentsAreCostedOnce: seventy fragments each spreading the next
// twice stand for 2^70 fields; gqlgen's calculation would walk them all,
// this one costs each fragment once (and saturates).
func TestFragmentsAreCostedOnce(t *testing.T) {
	doc := validated(t, fragmentDoubling(70))
	start := time.Now()
	assert.Equal(t, math.MaxInt, operationCost(doc, doc.Operations[0], nil))
	t.Logf("costed in %s", time.Since(start))
	doc = validated(t, fragmentDoubling(10))
	assert.Equal(t, 1<<10, operationCost(doc, doc.Operations[0], nil), "each __typename counted where it is spread")
}

// fragmentDoubling is a query of n fragments, each spreading the next
// twice, the last selecting __typename: 2^n fields once inlined.
func fragmentDoubling(n int) string {
	var b strings.Builder
	b.WriteString("{ ...F0 } ")
	for i := range n {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d } ", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Query { __typename }", n)
	return b.String()
}

// webPageDocuments are the GraphQL documents of the web page's scripts, by
// the name of their constant: every `const NAME = ...` template or string
// holding an operation, its ${…} placeholders filled in from the file's
// other constants.
func webPageDocuments(t *testing.T) map[string]string {
	t.Helper()
	scripts, err := filepath.Glob("../web/static/*.js")
	require.NoError(t, err)
	constant := regexp.MustCompile("(?s)const ([A-Z_]+) = (?:`([^`]*)`|'([^']*)');")
	placeholder := regexp.MustCompile(`\$\{([A-Z_]+)\}`)
	docs := map[string]string{}
	for _, file := range scripts {
		src, err := os.ReadFile(file)
		require.NoError(t, err)
		consts := map[string]string{}
		for _, m := range constant.FindAllStringSubmatch(string(src), -1) {
			consts[m[1]] = m[2] + m[3]
		}
		for name, text := range consts {
			for placeholder.MatchString(text) {
				text = placeholder.ReplaceAllStringFunc(text, func(p string) string { return consts[p[2:len(p)-1]] })
			}
			if regexp.MustCompile(`^\s*(query|mutation|subscription)\b`).MatchString(text) {
				docs[name] = text
			}
		}
	}
	require.Greater(t, len(docs), 20, "the page's documents are found")
	return docs
}

// TestWebPageFitsTheLimits: every document of the web page passes
// validation, the merge check and the default complexity limit, with every
// page size at 100 (the most any list gives at once but kpiHistory, which
// the page asks 40 of).
func TestWebPageFitsTheLimits(t *testing.T) {
	sizes := map[string]any{"first": 100, "last": 100, "limit": 100}
	for name, query := range webPageDocuments(t) {
		doc := validated(t, query)
		assert.Empty(t, checkMerges(doc, expansionFactor*defaultQueryLimits.Tokens), name)
		cost := operationCost(doc, doc.Operations[0], sizes)
		assert.LessOrEqual(t, cost, defaultQueryLimits.Complexity, name)
		t.Logf("%-32s complexity %4d", name, cost)
	}
}

// TestGraphiQLIntrospectionPasses: the introspection query GraphiQL sends
// passes every bound.
func TestGraphiQLIntrospectionPasses(t *testing.T) {
	query, err := os.ReadFile("testdata/introspection.graphql")
	require.NoError(t, err)
	doc := validated(t, string(query))
	assert.Empty(t, checkMerges(doc, expansionFactor*defaultQueryLimits.Tokens))
	assert.NotEmpty(t, checkMerges(doc, 200), "it inlines to more than 200 selections")
	cost := operationCost(doc, doc.Operations[0], nil)
	assert.LessOrEqual(t, cost, defaultQueryLimits.Complexity)
	t.Logf("complexity %d", cost)
}

// adversarialDocuments are documents within the default token limit that
// cost gqlparser's validation seconds: fields of one name repeated, in one
// selection set, in many, in fragments, through inline fragments and
// spreads, and fragments that inline to more than the document holds.
func adversarialDocuments() map[string]string {
	var frags strings.Builder
	frags.WriteString("{ " + repeated("...F%d ", 90) + "} ")
	frags.WriteString(repeated("fragment F%d on Query { "+strings.Repeat("__typename ", 100)+"} ", 90))
	var tree strings.Builder // 2^30 places in the result, each selected once
	tree.WriteString(`{ __type(name: "Query") { ...T0 } } `)
	for i := range 30 {
		fmt.Fprintf(&tree, "fragment T%d on __Type { a: ofType { ...T%d } b: ofType { ...T%d } } ", i, i+1, i+1)
	}
	tree.WriteString("fragment T30 on __Type { name }")
	return map[string]string{
		"one field 9,998 times":                "{ " + strings.Repeat("__typename ", 9998) + "}",
		"a field with a selection 2,400 times": "{ " + strings.Repeat("me { id } ", 2400) + "}",
		"a field 70 times in 70 fields":        "{ " + strings.Repeat("me { "+strings.Repeat("id ", 70)+"} ", 70) + "}",
		"90 fragments of 100 fields":           frags.String(),
		"one fragment spread 4,900 times":      "{ " + strings.Repeat("...A ", 4900) + "} fragment A on Query { __typename }",
		"1,400 inline fragments":               "{ " + strings.Repeat("... on Query { __typename } ", 1400) + "}",
		"fragments doubling 30 times deep":     tree.String(),
	}
}

// TestValidationIsBounded: every adversarial document is refused by the
// merge check, which parses it and walks it once (the times printed), and
// so never reaches validation; validating them took seconds each (see
// BenchmarkValidation).
func TestValidationIsBounded(t *testing.T) {
	ctx := t.Context()
	bounds := documentBounds{tokens: defaultQueryLimits.Tokens, parsed: newParsedCache()}
	for name, query := range adversarialDocuments() {
		start := time.Now()
		err := bounds.MutateOperationParameters(ctx, &graphql.RawParams{Query: query})
		elapsed := time.Since(start)
		if assert.NotNil(t, err, name) {
			assert.Equal(t, "GRAPHQL_VALIDATION_FAILED", err.Extensions["code"], name)
			t.Logf("%-38s %6d bytes: refused in %7s: %s", name, len(query), elapsed.Round(time.Microsecond), err.Message)
		}
	}
}

// BenchmarkValidation measures, for each adversarial document, what
// validating it costs (what the server did before the merge check) and
// what the check that now refuses it costs. The first takes up to seconds
// an operation, so it runs only with SWITCHBOARD_BENCH_REFERENCE=1:
//
//	SWITCHBOARD_BENCH_REFERENCE=1 go test -run '^$' -bench Validation -benchtime 1x ./app
func BenchmarkValidation(b *testing.B) {
	bounds := documentBounds{tokens: defaultQueryLimits.Tokens, parsed: newParsedCache()}
	for name, query := range adversarialDocuments() {
		b.Run(name+"/validated", func(b *testing.B) {
			if os.Getenv("SWITCHBOARD_BENCH_REFERENCE") == "" {
				b.Skip("gqlparser's own validation of these takes up to seconds an operation: set SWITCHBOARD_BENCH_REFERENCE=1 to measure it")
			}
			for b.Loop() {
				doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, defaultQueryLimits.Tokens)
				require.NoError(b, err)
				validator.ValidateWithRules(schema.Schema(), doc, queryRules(true, true, defaultQueryLimits))
			}
		})
		b.Run(name+"/checked", func(b *testing.B) {
			for b.Loop() {
				require.NotNil(b, bounds.MutateOperationParameters(b.Context(), &graphql.RawParams{Query: query}))
			}
		})
	}
}

// TestErrorsAreCapped: a document with a hundred mistakes gets maxErrors
// errors, and one more saying there were more.
func TestErrorsAreCapped(t *testing.T) {
	doc, err := parser.ParseQuery(&ast.Source{Input: "{ " + repeated("x%d ", 100) + "}"})
	require.NoError(t, err)
	errs := validator.ValidateWithRules(schema.Schema(), doc, queryRules(true, true, defaultQueryLimits))
	require.Len(t, errs, maxErrors+1)
	assert.Contains(t, errs[0].Message, `Cannot query field "x0"`)
	assert.Equal(t, "more than 20 errors; the others are not reported", errs[maxErrors].Message)
}

// TestResponsesCarryBoundedErrors: a response with more than maxErrors+1
// errors keeps maxErrors of them and a note with the next one's code.
func TestResponsesCarryBoundedErrors(t *testing.T) {
	respond := func(n int) *graphql.Response {
		resp := &graphql.Response{}
		for i := range n {
			resp.Errors = append(resp.Errors, &gqlerror.Error{Message: fmt.Sprint(i), Extensions: map[string]any{"code": "NOT_FOUND"}})
		}
		return errorCap{}.InterceptResponse(t.Context(), func(context.Context) *graphql.Response { return resp })
	}
	assert.Len(t, respond(maxErrors+1).Errors, maxErrors+1, "as many as validation reports pass")
	resp := respond(100)
	require.Len(t, resp.Errors, maxErrors+1)
	assert.Equal(t, "19", resp.Errors[maxErrors-1].Message)
	assert.Equal(t, "80 more errors are not reported", resp.Errors[maxErrors].Message)
	assert.Equal(t, "NOT_FOUND", resp.Errors[maxErrors].Extensions["code"])
}
