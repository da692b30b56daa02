package gqlws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
)

// TestEndSessions: EndSessions closes the connections granted by the
// sessions it names with 4403, on both protocols, leaves the others open,
// and refuses a connection_init granted by an ended session afterwards.
func TestEndSessions(t *testing.T) {
	h := newHarness(t, gqlws.Options{Init: func(ctx context.Context, payload map[string]any) (gqlws.InitResult, error) {
		s, _ := payload["session"].(string)
		return gqlws.InitResult{Session: s}, nil
	}})
	dial := func(proto, session string) *websocket.Conn {
		c := h.dialProto(t, proto)
		require.NoError(t, c.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"session": session}}))
		var ack frame
		require.NoError(t, c.ReadJSON(&ack))
		require.Equal(t, "connection_ack", ack.Type)
		return c
	}
	closed := func(c *websocket.Conn) (int, string) {
		t.Helper()
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var f frame
			err := c.ReadJSON(&f)
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text
			}
			require.NoError(t, err, "a close frame, not another failure")
		}
	}
	a1, a2 := dial(gqlws.TransportWS, "a"), dial(gqlws.LegacyWS, "a")
	b := dial(gqlws.TransportWS, "b")
	anonymous := dial(gqlws.TransportWS, "")

	assert.Equal(t, 2, h.ws.EndSessions("a", "c"))
	for _, c := range []*websocket.Conn{a1, a2} {
		code, reason := closed(c)
		assert.Equal(t, gqlws.CloseForbidden, code)
		assert.Equal(t, "Session ended", reason)
	}
	for _, c := range []*websocket.Conn{b, anonymous} {
		require.NoError(t, c.WriteJSON(map[string]any{"type": "ping"}))
		var f frame
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		require.NoError(t, c.ReadJSON(&f), "still open")
		assert.Equal(t, "pong", f.Type)
	}

	// A grant decided before the session ended, arriving after: refused.
	late := h.dialProto(t, gqlws.TransportWS)
	require.NoError(t, late.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"session": "a"}}))
	code, _ := closed(late)
	assert.Equal(t, gqlws.CloseForbidden, code)
	assert.Equal(t, 0, h.ws.EndSessions(), "nothing named, nothing closed")
}
