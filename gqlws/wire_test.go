package gqlws_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlws"
)

// step is one step of a wire exchange: a text message the client sends
// (send), a binary one (sendBinary), the exact frame the server must send
// next (want), or the close the server must end with (closeCode, reason).
type step struct {
	send       string
	sendBinary string
	want       string
	closeCode  int
	reason     string
}

// send is the step of sending text message m.
func send(m string) step { return step{send: m} }

// want is the step of receiving exactly frame.
func want(frame string) step { return step{want: frame} }

// closes is the step of the server closing with code c and reason r.
func closes(c int, r string) step { return step{closeCode: c, reason: r} }

// wireOptions accept every connection_init but one whose payload carries
// {"token": "bad"} (refused) or {"token": "busy"} (to try again later), and
// acknowledge with a payload; a connection runs at most two operations at
// once, and one initialised with {"token": "limited"} none (Admit refuses
// them).
func wireOptions() gqlws.Options {
	return gqlws.Options{
		Init: func(ctx context.Context, payload map[string]any) (gqlws.InitResult, error) {
			switch payload["token"] {
			case "bad":
				return gqlws.InitResult{}, errors.New("token refused")
			case "busy":
				return gqlws.InitResult{}, &gqlws.TryAgainLater{Reason: "too many connections (at most 3)"}
			}
			ctx = context.WithValue(ctx, limitedKey{}, payload["token"] == "limited")
			return gqlws.InitResult{Context: ctx, Ack: map[string]any{"user": nil, "version": "test"}}, nil
		},
		Admit: func(ctx context.Context) error {
			if limited, _ := ctx.Value(limitedKey{}).(bool); limited {
				return errors.New("too many operations for this user")
			}
			return nil
		},
		MaxOperations: 2,
	}
}

// limitedKey marks the context of a connection whose operations Admit
// refuses.
type limitedKey struct{}

const (
	subscribeQuery = `{"query":"subscription { statusPosted { id } }"}`
	typenameQuery  = `{"query":"{ __typename }"}`
	badQuery       = `{"query":"subscription { nope }"}`
)

// TestWireExchanges pins, byte for byte, what the server sends in answer to
// each kind of client message on both protocols: frames (their field order
// included), close codes and reasons, and that nothing else comes in
// between. An exchange that does not end with a close ends with a marker
// message whose answer must be the next frame (a ping on
// graphql-transport-ws, an unknown type on the legacy protocol).
func TestWireExchanges(t *testing.T) {
	h := newHarness(t, wireOptions())
	cases := slices.Concat(transportWSExchanges(), legacyExchanges(), hostileExchanges(), callerLimitExchanges())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dialProto(t, tc.proto)
			steps := tc.steps
			if last := steps[len(steps)-1]; last.closeCode == 0 {
				steps = append(steps, marker(tc.proto)...)
			}
			for i, s := range steps {
				switch {
				case s.send != "":
					require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(s.send)))
				case s.sendBinary != "":
					require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte(s.sendBinary)))
				case s.want != "":
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					typ, data, err := c.ReadMessage()
					require.NoError(t, err, "step %d", i)
					assert.Equal(t, websocket.TextMessage, typ, "step %d", i)
					require.Equal(t, s.want, string(data), "step %d", i)
				default:
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, data, err := c.ReadMessage()
					require.Error(t, err, "step %d: expected the close, got %s", i, data)
					var ce *websocket.CloseError
					require.True(t, errors.As(err, &ce), "step %d: %v", i, err)
					assert.Equal(t, s.closeCode, ce.Code, "step %d", i)
					assert.Equal(t, s.reason, ce.Text, "step %d", i)
				}
			}
		})
	}
}

// exchange is a named sequence of steps on a fresh connection speaking proto.
type exchange struct {
	name  string
	proto string
	steps []step
}

// Frames that several exchanges expect.
const (
	id128           = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	wireAck         = `{"payload":{"user":null,"version":"test"},"type":"connection_ack"}`
	validationError = `[{"message":"Cannot query field \"nope\" on type \"Subscription\".","locations":[{"line":1,"column":16}],"extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}]`
)

// transportWSExchanges are the graphql-transport-ws exchanges: every refusal
// closes with the specification's code.
func transportWSExchanges() []exchange {
	return []exchange{
		{"transport-ws: ping before init, with and without payload", gqlws.TransportWS, []step{
			send(`{"type":"ping","payload":{"at":1}}`), want(`{"type":"pong","payload":{"at":1}}`),
			send(`{"type":"ping","payload":null}`), want(`{"type":"pong"}`),
			send(`{"type":"pong"}`),
		}},
		{"transport-ws: init acknowledged with payload", gqlws.TransportWS, []step{
			send(`{"type":"connection_init","payload":{"token":"ok"}}`), want(wireAck),
		}},
		{"transport-ws: init refused", gqlws.TransportWS, []step{
			send(`{"type":"connection_init","payload":{"token":"bad"}}`), closes(4403, "Forbidden"),
		}},
		{"transport-ws: init payload not an object", gqlws.TransportWS, []step{
			send(`{"type":"connection_init","payload":"x"}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: second init", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"connection_init"}`), closes(4429, "Too many initialisation requests"),
		}},
		{"transport-ws: invalid JSON", gqlws.TransportWS, []step{send(`{oops`), closes(4400, "Invalid message received")}},
		{"transport-ws: binary frame", gqlws.TransportWS, []step{{sendBinary: `{"type":"ping"}`}, closes(4400, "Invalid message received")}},
		{"transport-ws: no type", gqlws.TransportWS, []step{send(`{"id":"1"}`), closes(4400, "Invalid message received")}},
		{"transport-ws: unknown type", gqlws.TransportWS, []step{send(`{"type":"hello"}`), closes(4400, "Invalid message received")}},
		{"transport-ws: server message from client", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"next","id":"1","payload":{}}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: subscribe before ack", gqlws.TransportWS, []step{
			send(`{"type":"subscribe","id":"1","payload":` + typenameQuery + `}`), closes(4401, "Unauthorized"),
		}},
		{"transport-ws: subscribe without id before ack", gqlws.TransportWS, []step{
			send(`{"type":"subscribe","payload":` + typenameQuery + `}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: subscribe with a numeric id", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":1,"payload":` + typenameQuery + `}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: subscribe without query", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"1","payload":{}}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: complete without id", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"complete"}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: query answers next then complete", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"q","payload":` + typenameQuery + `}`),
			want(`{"type":"next","id":"q","payload":{"data":{"__typename":"Query"}}}`),
			want(`{"type":"complete","id":"q"}`),
		}},
		{"transport-ws: validation error, nothing after it", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"v","payload":` + badQuery + `}`),
			want(`{"type":"error","id":"v","payload":` + validationError + `}`),
		}},
		{"transport-ws: complete stops silently, the id is reusable", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"s","payload":` + subscribeQuery + `}`),
			send(`{"type":"complete","id":"s"}`),
			send(`{"type":"complete","id":"unknown"}`),
			send(`{"type":"subscribe","id":"s","payload":` + subscribeQuery + `}`),
		}},
		{"transport-ws: duplicate id", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"dup","payload":` + subscribeQuery + `}`),
			send(`{"type":"subscribe","id":"dup","payload":` + subscribeQuery + `}`),
			closes(4409, "Subscriber for dup already exists"),
		}},
		{"transport-ws: over the operations limit", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"a","payload":` + subscribeQuery + `}`),
			send(`{"type":"subscribe","id":"b","payload":` + subscribeQuery + `}`),
			send(`{"type":"subscribe","id":"c","payload":` + subscribeQuery + `}`),
			want(`{"type":"error","id":"c","payload":[{"message":"too many operations on this connection (at most 2 at once)","extensions":{"code":"RATE_LIMITED"}}]}`),
		}},
	}
}

// legacyExchanges are the legacy protocol's exchanges: refusals are answered
// with connection_error or error, and the connection stays.
func legacyExchanges() []exchange {
	return []exchange{
		{"legacy: init acknowledged, then ka", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":{"token":"ok"}}`), want(wireAck), want(`{"type":"ka"}`),
		}},
		{"legacy: init refused", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":{"token":"bad"}}`),
			want(`{"payload":{"message":"token refused"},"type":"connection_error"}`),
			closes(4403, "Forbidden"),
		}},
		{"legacy: init payload not an object", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":[1]}`),
			want(`{"payload":{"message":"connection_init payload must be an object"},"type":"connection_error"}`),
			closes(4400, "Invalid message received"),
		}},
		{"legacy: second init", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"connection_init"}`),
			want(`{"payload":{"message":"Too many initialisation requests"},"type":"connection_error"}`),
		}},
		{"legacy: invalid JSON", gqlws.LegacyWS, []step{
			send(`{oops`), want(`{"payload":{"message":"Invalid message received"},"type":"connection_error"}`),
			{sendBinary: `{"type":"connection_init"}`}, want(`{"payload":{"message":"Invalid message received"},"type":"connection_error"}`),
			send(`{"id":"1"}`), want(`{"payload":{"message":"Invalid message received"},"type":"connection_error"}`),
		}},
		{"legacy: unknown type, with and without id", gqlws.LegacyWS, []step{
			send(`{"type":"hello","id":"7"}`), want(`{"id":"7","payload":{"message":"Invalid message type!"},"type":"error"}`),
			send(`{"type":"ping"}`), want(`{"payload":{"message":"Invalid message type!"},"type":"error"}`),
			send(`{"type":"subscribe","id":"1","payload":` + typenameQuery + `}`), want(`{"id":"1","payload":{"message":"Invalid message type!"},"type":"error"}`),
		}},
		{"legacy: start without id", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","payload":` + typenameQuery + `}`),
			want(`{"payload":{"message":"start needs an id"},"type":"connection_error"}`),
		}},
		{"legacy: start without query", gqlws.LegacyWS, []step{
			send(`{"type":"start","id":"1","payload":{}}`),
			want(`{"type":"error","id":"1","payload":[{"message":"invalid payload: a query string is required"}]}`),
		}},
		{"legacy: start before init", gqlws.LegacyWS, []step{
			send(`{"type":"start","id":"1","payload":` + typenameQuery + `}`),
			want(`{"type":"error","id":"1","payload":[{"message":"connection_init first"}]}`),
		}},
		{"legacy: query answers data then complete", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"q","payload":` + typenameQuery + `}`),
			want(`{"type":"data","id":"q","payload":{"data":{"__typename":"Query"}}}`),
			want(`{"type":"complete","id":"q"}`),
		}},
		{"legacy: validation error", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"v","payload":` + badQuery + `}`),
			want(`{"type":"error","id":"v","payload":` + validationError + `}`),
		}},
		{"legacy: stop answers complete, a start replaces a running id", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"s","payload":` + subscribeQuery + `}`),
			send(`{"type":"start","id":"s","payload":` + subscribeQuery + `}`),
			send(`{"type":"stop","id":"s"}`), want(`{"id":"s","type":"complete"}`),
			send(`{"type":"stop","id":"s"}`),
			send(`{"type":"stop"}`),
		}},
		{"legacy: over the operations limit", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"a","payload":` + subscribeQuery + `}`),
			send(`{"type":"start","id":"b","payload":` + subscribeQuery + `}`),
			send(`{"type":"start","id":"c","payload":` + subscribeQuery + `}`),
			want(`{"type":"error","id":"c","payload":[{"message":"too many operations on this connection (at most 2 at once)","extensions":{"code":"RATE_LIMITED"}}]}`),
		}},
		{"legacy: connection_terminate", gqlws.LegacyWS, []step{
			send(`{"type":"connection_terminate"}`), closes(1000, ""),
		}},
	}
}

// hostileExchanges are the answers to what only a broken or hostile client
// sends, on both protocols: text that is not UTF-8 (1007), ids over 128
// bytes (invalid), ping and pong payloads that are not objects (invalid),
// and ids too long to quote whole in a close reason.
func hostileExchanges() []exchange {
	return []exchange{
		{"transport-ws: ping payload not an object", gqlws.TransportWS, []step{
			send(`{"type":"ping","payload":"end"}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: pong payload not an object", gqlws.TransportWS, []step{
			send(`{"type":"pong","payload":[1]}`), closes(4400, "Invalid message received"),
		}},
		{"transport-ws: text that is not UTF-8", gqlws.TransportWS, []step{
			send(`{"type":"ping","payload":{"x":"` + "\xff" + `"}}`), closes(1007, "Invalid UTF-8"),
		}},
		{"transport-ws: an id of 128 bytes", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"` + id128 + `","payload":` + typenameQuery + `}`),
			want(`{"type":"next","id":"` + id128 + `","payload":{"data":{"__typename":"Query"}}}`),
			want(`{"type":"complete","id":"` + id128 + `"}`),
		}},
		{"transport-ws: an id of 129 bytes", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"` + id128 + `x","payload":` + typenameQuery + `}`),
			closes(4400, "Invalid message received"),
		}},
		{"transport-ws: a long duplicate id is shortened in the close reason", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"` + id128 + `","payload":` + subscribeQuery + `}`),
			send(`{"type":"subscribe","id":"` + id128 + `","payload":` + subscribeQuery + `}`),
			closes(4409, "Subscriber for "+id128[:90]+"… already exists"),
		}},
		{"transport-ws: a duplicate id is cut at a character boundary", gqlws.TransportWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck),
			send(`{"type":"subscribe","id":"` + strings.Repeat("€", 42) + `","payload":` + subscribeQuery + `}`),
			send(`{"type":"subscribe","id":"` + strings.Repeat("€", 42) + `","payload":` + subscribeQuery + `}`),
			closes(4409, "Subscriber for "+strings.Repeat("€", 30)+"… already exists"),
		}},
		{"legacy: text that is not UTF-8", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":{"x":"` + "\xc3" + `"}}`), closes(1007, "Invalid UTF-8"),
		}},
		{"legacy: an id of 129 bytes", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init"}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"` + id128 + `x","payload":` + typenameQuery + `}`),
			want(`{"payload":{"message":"Invalid message received"},"type":"connection_error"}`),
			send(`{"type":"hello","id":"` + id128 + `x"}`),
			want(`{"payload":{"message":"Invalid message received"},"type":"connection_error"}`),
			send(`{"type":"start","id":"` + id128 + `","payload":` + typenameQuery + `}`),
			want(`{"type":"data","id":"` + id128 + `","payload":{"data":{"__typename":"Query"}}}`),
			want(`{"type":"complete","id":"` + id128 + `"}`),
		}},
	}
}

// callerLimitExchanges are the refusals of the limits across connections,
// on both protocols: an init refused for now (1013, which clients retry
// with backoff) and an operation Admit refuses (the connection stays).
func callerLimitExchanges() []exchange {
	return []exchange{
		{"transport-ws: init refused for now", gqlws.TransportWS, []step{
			send(`{"type":"connection_init","payload":{"token":"busy"}}`), closes(1013, "too many connections (at most 3)"),
		}},
		{"transport-ws: operation refused by Admit, the connection stays", gqlws.TransportWS, []step{
			send(`{"type":"connection_init","payload":{"token":"limited"}}`), want(wireAck),
			send(`{"type":"subscribe","id":"a","payload":` + typenameQuery + `}`),
			want(`{"type":"error","id":"a","payload":[{"message":"too many operations for this user","extensions":{"code":"RATE_LIMITED"}}]}`),
		}},
		{"legacy: init refused for now", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":{"token":"busy"}}`),
			want(`{"payload":{"message":"too many connections (at most 3)"},"type":"connection_error"}`),
			closes(1013, "too many connections (at most 3)"),
		}},
		{"legacy: operation refused by Admit", gqlws.LegacyWS, []step{
			send(`{"type":"connection_init","payload":{"token":"limited"}}`), want(wireAck), want(`{"type":"ka"}`),
			send(`{"type":"start","id":"a","payload":` + typenameQuery + `}`),
			want(`{"type":"error","id":"a","payload":[{"message":"too many operations for this user","extensions":{"code":"RATE_LIMITED"}}]}`),
		}},
	}
}

// marker is the exchange that ends a case without a close: the answer to
// the marker must be the next frame.
func marker(proto string) []step {
	if proto == gqlws.TransportWS {
		return []step{send(`{"type":"ping","payload":{"end":true}}`), want(`{"type":"pong","payload":{"end":true}}`)}
	}
	return []step{send(`{"type":"end","id":"end"}`), want(`{"id":"end","payload":{"message":"Invalid message type!"},"type":"error"}`)}
}

// dialProto connects with subprotocol proto and nothing else.
func (h *harness) dialProto(t *testing.T, proto string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{proto}}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(h.srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestWireKeepaliveAndTimeouts pins the server's own frames and closes on
// both protocols: the keepalive frame, the init timeout and the close at
// shutdown.
func TestWireKeepaliveAndTimeouts(t *testing.T) {
	opts := wireOptions()
	opts.KeepAlive = 50 * time.Millisecond
	opts.InitTimeout = 200 * time.Millisecond
	h := newHarness(t, opts)
	for _, tc := range []struct {
		proto string
		init  []string // the frames that answer connection_init
		ka    string
	}{
		{gqlws.TransportWS, []string{wireAck}, `{"type":"ping"}`},
		{gqlws.LegacyWS, []string{wireAck, `{"type":"ka"}`}, `{"type":"ka"}`},
	} {
		t.Run(tc.proto+" keepalive", func(t *testing.T) {
			c := h.dialProto(t, tc.proto)
			require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init"}`)))
			for _, w := range tc.init {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, data, err := c.ReadMessage()
				require.NoError(t, err)
				require.Equal(t, w, string(data))
			}
			for range 2 {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, data, err := c.ReadMessage()
				require.NoError(t, err)
				require.Equal(t, tc.ka, string(data))
				if tc.proto == gqlws.TransportWS {
					require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`)))
				}
			}
		})
		t.Run(tc.proto+" init timeout", func(t *testing.T) {
			c := h.dialProto(t, tc.proto)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			require.True(t, errors.As(err, &ce), "%v", err)
			assert.Equal(t, 4408, ce.Code)
			assert.Equal(t, "Connection initialisation timeout", ce.Text)
		})
	}
}
