package app

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCORSAllowHeaders: a preflight grants the base headers and repeats
// the valid names it asked for, once each, at most maxReflectedHeaders.
func TestCORSAllowHeaders(t *testing.T) {
	assert.Equal(t, "Authorization, Content-Type, Last-Event-ID, X-Request-ID", corsAllowHeaders(""))
	assert.Equal(t, "Authorization, Content-Type, Last-Event-ID, X-Request-ID, apollographql-client-name, apollographql-client-version",
		corsAllowHeaders("authorization, content-type, apollographql-client-name,apollographql-client-version"))
	assert.Equal(t, "Authorization, Content-Type, Last-Event-ID, X-Request-ID, traceparent",
		corsAllowHeaders("bad header, x\r\ny, traceparent, TRACEPARENT, , (paren)"), "invalid names dropped, duplicates once")
	many := ""
	for i := range 40 {
		many += "x-h" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ","
	}
	assert.Len(t, strings.Split(corsAllowHeaders(many), ", "), len(corsBaseHeaders)+maxReflectedHeaders)
}
