package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/models"
)

// The caches' bounds, in bytes. A parsed document takes 20 to 110 times the
// bytes of its text (up to 230 bytes per AST node; see
// TestParsedDocumentSizeCoversItsHeap): the web page's documents count
// 3.6 KB on average, so the parsed cache holds some 4,500 of them (it held a
// thousand documents of any size before), while the largest document the
// default token limit lets through counts about 5 MB, so it holds three of
// those at most. The persisted-query cache holds texts alone (a few hundred
// bytes each for real clients): at a quarter of the size it still holds
// more documents than the parsed cache.
const (
	parsedCacheBytes    = 16 << 20
	persistedCacheBytes = 4 << 20
)

// entryOverhead is what one cache entry costs besides its key and value:
// the map entry, the list element, the headers.
const entryOverhead = 128

// astNodeBytes bounds the heap one node of a parsed document takes (an
// ast.Field with its position, an ast.Value with its child slot, …):
// measured at 110 to 230 bytes.
const astNodeBytes = 256

// byteLRU is a graphql.Cache that keeps the most recently used entries whose
// sizes add up to at most limit bytes, however many entries that is; the
// least recently used are evicted to make room, and an entry larger than
// limit is not kept. It is safe for concurrent use.
type byteLRU[T any] struct {
	limit int
	size  func(key string, value T) int
	mu    sync.Mutex
	used  int
	lru   *simplelru.LRU[string, sized[T]]
}

var _ graphql.Cache[string] = (*byteLRU[string])(nil)

// sized is a cached value and the bytes its entry counts.
type sized[T any] struct {
	value T
	bytes int
}

// newByteLRU returns an empty cache of limit bytes; size tells the bytes of
// an entry (entryOverhead is added to it).
func newByteLRU[T any](limit int, size func(key string, value T) int) *byteLRU[T] {
	c := &byteLRU[T]{limit: limit, size: size}
	// The entry bound is never reached: the bytes are the bound.
	c.lru, _ = simplelru.NewLRU(math.MaxInt, func(_ string, e sized[T]) { c.used -= e.bytes })
	return c
}

// Get returns the value cached for key, and makes it the most recently
// used.
func (c *byteLRU[T]) Get(_ context.Context, key string) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Get(key)
	return e.value, ok
}

// Add caches value under key, replacing what was there, and evicts the
// least recently used entries until the cache is within its bound.
func (c *byteLRU[T]) Add(_ context.Context, key string, value T) {
	n := c.size(key, value) + entryOverhead
	if n > c.limit {
		return // it would evict everything, and still not fit
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(key); ok {
		c.used -= old.bytes
	}
	c.lru.Add(key, sized[T]{value, n})
	c.used += n
	for c.used > c.limit {
		c.lru.RemoveOldest() // the eviction callback subtracts its bytes
	}
}

// Bytes is what the entries count together, at most the limit.
func (c *byteLRU[T]) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// newParsedCache is the cache of parsed and validated documents, keyed by
// their text.
func newParsedCache() *byteLRU[*ast.QueryDocument] {
	return newByteLRU(parsedCacheBytes, func(query string, doc *ast.QueryDocument) int {
		// The document keeps its text (as its source), so the key is
		// counted once.
		return len(query) + astNodeBytes*documentNodes(doc)
	})
}

// newPersistedCache is the cache of persisted queries' texts, keyed by
// their SHA-256 hash.
func newPersistedCache() *byteLRU[string] {
	return newByteLRU(persistedCacheBytes, func(hash, query string) int { return len(hash) + len(query) })
}

// documentNodes counts the nodes of a parsed document: definitions,
// selections, arguments, directives and values (fragments once each, where
// they are defined).
func documentNodes(doc *ast.QueryDocument) int {
	n := 0
	var value func(v *ast.Value)
	value = func(v *ast.Value) {
		if v == nil {
			return
		}
		n++
		for _, c := range v.Children {
			n++
			value(c.Value)
		}
	}
	arguments := func(args ast.ArgumentList) {
		for _, a := range args {
			n++
			value(a.Value)
		}
	}
	directives := func(ds ast.DirectiveList) {
		for _, d := range ds {
			n++
			arguments(d.Arguments)
		}
	}
	var selections func(set ast.SelectionSet)
	selections = func(set ast.SelectionSet) {
		for _, sel := range set {
			n++
			switch s := sel.(type) {
			case *ast.Field:
				arguments(s.Arguments)
				directives(s.Directives)
				selections(s.SelectionSet)
			case *ast.InlineFragment:
				directives(s.Directives)
				selections(s.SelectionSet)
			case *ast.FragmentSpread:
				directives(s.Directives)
			}
		}
	}
	for _, op := range doc.Operations {
		n++
		for _, v := range op.VariableDefinitions {
			n++
			value(v.DefaultValue)
			directives(v.Directives)
		}
		directives(op.Directives)
		selections(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		n++
		directives(f.Directives)
		selections(f.SelectionSet)
	}
	return n
}

// persistedQueries is gqlgen's automatic persisted queries
// (extension.AutomaticPersistedQuery) with one change: a document sent with
// its hash enters the cache only once it has parsed and validated, so that
// one refused (by the token limit, or as invalid) takes no room. A hash the
// cache does not know gets PERSISTED_QUERY_NOT_FOUND, and the client sends
// the document with it.
type persistedQueries struct {
	cache graphql.Cache[string]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
} = persistedQueries{}

// apqStats is the operation statistics key under which gqlgen's extension
// keeps its extension.ApqStats; extension.GetApqStats reads it.
const apqStats = "APQ"

// ExtensionName names the extension.
func (persistedQueries) ExtensionName() string { return "PersistedQueries" }

// Validate accepts every schema.
func (persistedQueries) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters fills in the document of a request that sent
// only a hash, and checks the hash of one that sent both.
func (p persistedQueries) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	ext, ok := params.Extensions["persistedQuery"].(map[string]any)
	if !ok {
		if params.Extensions["persistedQuery"] != nil {
			return badPersistedQuery("the persistedQuery extension must be an object")
		}
		return nil
	}
	hash, _ := ext["sha256Hash"].(string)
	if version, _ := wholeNumber(ext["version"]); version != 1 {
		return badPersistedQuery("unsupported persisted query version (only 1 is)")
	}
	if params.Query == "" {
		if params.Query, ok = p.cache.Get(ctx, hash); !ok {
			err := gqlerror.Errorf("PersistedQueryNotFound")
			errcode.Set(err, string(models.PersistedQueryNotFound))
			return err
		}
		graphql.GetOperationContext(ctx).Stats.SetExtension(apqStats, &extension.ApqStats{Hash: hash})
		return nil
	}
	sum := sha256.Sum256([]byte(params.Query))
	if hex.EncodeToString(sum[:]) != hash {
		return badPersistedQuery("the persisted query's sha256Hash does not match its document")
	}
	graphql.GetOperationContext(ctx).Stats.SetExtension(apqStats, &extension.ApqStats{Hash: hash, SentQuery: true})
	return nil
}

// MutateOperationContext caches a document sent with its hash, now that it
// has parsed and validated.
func (p persistedQueries) MutateOperationContext(ctx context.Context, op *graphql.OperationContext) *gqlerror.Error {
	if s, ok := op.Stats.GetExtension(apqStats).(*extension.ApqStats); ok && s.SentQuery {
		p.cache.Add(ctx, s.Hash, op.RawQuery)
	}
	return nil
}

// badPersistedQuery is a BAD_REQUEST error in a request's persistedQuery
// extension.
func badPersistedQuery(msg string) *gqlerror.Error {
	err := gqlerror.Errorf("%s", msg)
	errcode.Set(err, string(models.BadRequest))
	return err
}

// wholeNumber reads a whole number as JSON decoding (with or without
// UseNumber) or the GraphQL coercion of an Int leaves it.
func wholeNumber(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		return int64(n), n == math.Trunc(n) && math.Abs(n) < 1<<62
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}
