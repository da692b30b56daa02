package gqlws_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
)

type connKey struct{}

// TestLifecycleHooks: OnOpen hears of each connection with its subprotocol,
// OnRefused of each operation a limit refuses, OnClose of each end once,
// with the code and who closed; all under the connection's context, as
// ConnContext made it.
func TestLifecycleHooks(t *testing.T) {
	events := make(chan string, 16)
	named := func(ctx context.Context) any { return ctx.Value(connKey{}) }
	h := newHarness(t, gqlws.Options{
		InitTimeout:   200 * time.Millisecond,
		MaxOperations: 1,
		ConnContext: func(r *http.Request) context.Context {
			return context.WithValue(context.Background(), connKey{}, r.URL.Query().Get("name"))
		},
		OnOpen: func(ctx context.Context, proto string) { events <- fmt.Sprintf("open %v %s", named(ctx), proto) },
		OnClose: func(ctx context.Context, code int, byClient bool) {
			events <- fmt.Sprintf("close %v %d client=%v", named(ctx), code, byClient)
		},
		OnRefused: func(ctx context.Context, limit string) { events <- fmt.Sprintf("refused %v %s", named(ctx), limit) },
	})
	next := func() string {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
			return ""
		}
	}
	dial := func(name, proto string) *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{proto}}
		c, _, err := d.Dial("ws"+h.srv.URL[len("http"):]+"?name="+name, nil)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	a := dial("a", gqlws.TransportWS)
	assert.Equal(t, "open a graphql-transport-ws", next())
	require.NoError(t, a.WriteJSON(map[string]any{"type": "connection_init"}))
	sub := map[string]any{"query": `subscription { statusPosted { id } }`}
	require.NoError(t, a.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": sub}))
	require.NoError(t, a.WriteJSON(map[string]any{"type": "subscribe", "id": "2", "payload": sub}))
	assert.Equal(t, "refused a operations_per_connection", next())
	require.NoError(t, a.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4999, "bye")))
	assert.Equal(t, "close a 4999 client=true", next())

	dial("b", gqlws.LegacyWS) // never initialises
	assert.Equal(t, "open b graphql-ws", next())
	assert.Equal(t, fmt.Sprintf("close b %d client=false", gqlws.CloseInitTimeout), next())
	select {
	case e := <-events:
		t.Fatalf("unexpected event %q", e)
	case <-time.After(100 * time.Millisecond):
	}
}
