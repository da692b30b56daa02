package accounts

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestSessionCacheIsBounded: however many sessions pass, the cache holds at
// most its size; an ended session is never taken for a standing one again;
// each ending is reported once.
func TestSessionCacheIsBounded(t *testing.T) {
	c := newSessionCache(128)
	now := time.Now()
	for i := range 10_000 {
		c.remember(fmt.Sprint(i), sessionEntry{user: int64(i), end: now.Add(time.Hour), checked: now})
		assert.LessOrEqual(t, len(c.entries), 128)
	}
	for i := range 10_000 {
		c.end([]string{fmt.Sprint("x", i)})
		assert.LessOrEqual(t, len(c.entries), 128)
	}

	c = newSessionCache(16)
	assert.Equal(t, []string{"a", "b"}, c.end([]string{"a", "b"}))
	assert.Empty(t, c.end([]string{"a"}), "told once")
	kept := c.remember("a", sessionEntry{user: 1, end: now.Add(time.Hour), checked: now})
	assert.True(t, kept.ended, "a standing entry read before the session ended does not undo it")
	e, ok := c.get("a", now)
	assert.True(t, ok)
	assert.True(t, e.ended)

	c.remember("s", sessionEntry{user: 1, end: now.Add(time.Hour), checked: now})
	_, ok = c.get("s", now.Add(standingFor-time.Second))
	assert.True(t, ok)
	_, ok = c.get("s", now.Add(standingFor))
	assert.False(t, ok, "a standing session is read again after standingFor")
}
