package gqlws

import (
	"bytes"
	"encoding/json"
)

// transportWS is the adapter of graphql-transport-ws, the graphql-ws
// library's protocol, exactly as its specification says (docs/protocol.md
// sums it up): every message the server does not accept closes the
// connection with the code the specification gives it.
type transportWS struct{}

var _ protocol = transportWS{}

var (
	nextHead  = []byte(`{"type":"next","id":`)
	pingFrame = []byte(`{"type":"ping"}`)
)

// kind maps the messages a graphql-transport-ws client may send.
func (transportWS) kind(typ string) messageKind {
	switch typ {
	case "connection_init":
		return kindInit
	case "ping":
		return kindPing
	case "pong":
		return kindPong
	case "subscribe":
		return kindSubscribe
	case "complete":
		return kindComplete
	default:
		return kindUnknown
	}
}

// acknowledge sends connection_ack alone.
func (transportWS) acknowledge(c *conn, payload map[string]any) {
	c.writeControlMessage("connection_ack", "", payload)
}

// subscribeRefusal refuses a subscribe before connection_ack with 4401,
// whatever its payload, as the specification orders.
func (transportWS) subscribeRefusal(acked, hasQuery bool) (refusalReason, bool) {
	switch {
	case !acked:
		return subscribeBeforeAck, true
	case !hasQuery:
		return subscribeWithoutQuery, true
	default:
		return 0, false
	}
}

// replacesRunningID is false: a subscribe for a running id closes with 4409.
func (transportWS) replacesRunningID() bool { return false }

// answerStop sends nothing: the client that completes an operation expects
// nothing more for it.
func (transportWS) answerStop(*conn, string) {}

// refuse closes the connection: 4429 for a second connection_init, 4403
// (or 4400) for a refused one, 4401 for a subscribe before the ack, 4409 for
// a running id, and 4400 for every other invalid message.
func (transportWS) refuse(c *conn, r refusal) {
	switch r.reason {
	case repeatedInit:
		c.close(CloseTooManyInitRequests, "Too many initialisation requests")
	case initRefused:
		closeRefusedInit(c, r.err)
	case subscribeBeforeAck:
		c.close(CloseUnauthorized, "Unauthorized")
	case duplicateID:
		c.close(CloseSubscriberExists, subscriberExistsReason(r.id))
	default:
		c.close(CloseInvalidMessage, reasonInvalid)
	}
}

// resultHead begins a next message.
func (transportWS) resultHead() []byte { return nextHead }

// keepaliveFrame is a ping, which the client answers with pong.
func (transportWS) keepaliveFrame() []byte { return pingFrame }

// dropsSilentClients is true: a client answers every ping with pong.
func (transportWS) dropsSilentClients() bool { return true }

// pongFrame is the answer to a ping with payload: a pong echoing it, or a
// bare pong when the ping had none (or null).
func pongFrame(payload json.RawMessage) []byte {
	if len(payload) == 0 || bytes.Equal(payload, []byte("null")) {
		return []byte(`{"type":"pong"}`)
	}
	return append(append([]byte(`{"type":"pong","payload":`), payload...), '}')
}
