package app

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// TestByteLRUKeepsItsBound: entries are counted by their bytes; adding past
// the bound evicts the least recently used, a replaced entry counts once,
// and an entry larger than the whole cache is not kept.
func TestByteLRUKeepsItsBound(t *testing.T) {
	ctx := t.Context()
	c := newByteLRU(10*(100+entryOverhead), func(_ string, v string) int { return len(v) })
	value := strings.Repeat("v", 100)
	for i := range 10 {
		c.Add(ctx, fmt.Sprint(i), value)
	}
	assert.Equal(t, 10*(100+entryOverhead), c.Bytes(), "ten entries fill it exactly")
	_, ok := c.Get(ctx, "0") // now the most recently used
	require.True(t, ok)

	c.Add(ctx, "10", value)
	assert.Equal(t, 10*(100+entryOverhead), c.Bytes())
	_, ok = c.Get(ctx, "1")
	assert.False(t, ok, "the least recently used went")
	_, ok = c.Get(ctx, "0")
	assert.True(t, ok, "the recently read one stayed")

	c.Add(ctx, "0", strings.Repeat("v", 50)) // replaced: counted once, smaller
	assert.Equal(t, 9*(100+entryOverhead)+50+entryOverhead, c.Bytes())

	c.Add(ctx, "big", strings.Repeat("v", 30*100)) // more than the whole cache
	_, ok = c.Get(ctx, "big")
	assert.False(t, ok, "an entry larger than the cache is not kept")
	_, ok = c.Get(ctx, "0")
	assert.True(t, ok, "and evicts nothing")

	c.Add(ctx, "large", strings.Repeat("v", 5*100)) // evicts as many as it takes
	assert.LessOrEqual(t, c.Bytes(), 10*(100+entryOverhead))
	_, ok = c.Get(ctx, "large")
	assert.True(t, ok)
}

// TestParsedDocumentSizeCoversItsHeap: what the parsed cache counts for a
// document is at least the heap its AST takes, for documents of every
// shape (many fields, long lists, nested objects, one long string).
func TestParsedDocumentSizeCoversItsHeap(t *testing.T) {
	docs := map[string]func(i int) string{
		"fields": func(i int) string {
			return fmt.Sprintf("{ a%d: me { id } %s}", i, strings.Repeat("me { id name } ", 1600))
		},
		"names":   func(i int) string { return fmt.Sprintf("{ a%d: me { id } %s}", i, strings.Repeat("__typename ", 9900)) },
		"list":    func(i int) string { return fmt.Sprintf("{ a%d: f(a: [%s]) }", i, strings.Repeat("1 ", 9900)) },
		"objects": func(i int) string { return fmt.Sprintf("{ a%d: f(a: [%s]) }", i, strings.Repeat("{a: 1, b: 2} ", 900)) },
		"string":  func(i int) string { return fmt.Sprintf(`{ a%d: f(a: "%s") }`, i, strings.Repeat("x", 100000)) },
		"page": func(i int) string {
			return fmt.Sprintf(`query Q%d($first: Int!) { statuses(first: $first) { edges { cursor node { id text author { name } } } } }`, i)
		},
	}
	const n = 20
	for name, doc := range docs {
		queries := make([]string, n)
		for i := range n {
			queries[i] = doc(i)
		}
		parsed := make([]*ast.QueryDocument, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i, q := range queries {
			d, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, 10000)
			require.NoError(t, err, name)
			parsed[i] = d
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int(after.HeapAlloc-before.HeapAlloc) / n // the AST alone: the text was there before
		counted := astNodeBytes * documentNodes(parsed[0])
		t.Logf("%-8s %7d bytes of text, %5d nodes: %8d bytes of heap, %8d counted", name, len(queries[0]), documentNodes(parsed[0]), heap, counted)
		assert.GreaterOrEqual(t, counted, heap, "%s: the count covers the AST's heap", name)
		runtime.KeepAlive(parsed)
	}
}
