package live

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRecent: a key drops out once n newer adds have come after its last
// one, and only then.
func TestRecent(t *testing.T) {
	r := NewRecent[string](3)
	for _, k := range []string{"a", "b", "a"} {
		_, ok := r.Add(k)
		assert.False(t, ok, "nothing drops out of the first 3")
	}
	_, ok := r.Add("c") // pushes out the first a; a is still among the newest
	assert.False(t, ok)
	assert.True(t, r.Has("a"))
	dropped, ok := r.Add("d") // pushes out b
	assert.True(t, ok)
	assert.Equal(t, "b", dropped)
	assert.False(t, r.Has("b"))
	dropped, ok = r.Add("e") // pushes out the last a
	assert.True(t, ok)
	assert.Equal(t, "a", dropped)
	assert.True(t, r.Has("c") && r.Has("d") && r.Has("e"))
}
