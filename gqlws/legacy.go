package gqlws

import "github.com/vektah/gqlparser/v2/gqlerror"

// legacyWS is the adapter of the legacy protocol of Apollo's
// subscriptions-transport-ws (subprotocol graphql-ws), answering as that
// library's server did: a message it does not accept is answered with
// connection_error or error and the connection stays, except for a refused
// connection_init.
type legacyWS struct{}

var _ protocol = legacyWS{}

var (
	dataHead = []byte(`{"type":"data","id":`)
	kaFrame  = []byte(`{"type":"ka"}`)
)

// kind maps the messages a subscriptions-transport-ws client may send.
func (legacyWS) kind(typ string) messageKind {
	switch typ {
	case "connection_init":
		return kindInit
	case "start":
		return kindSubscribe
	case "stop":
		return kindComplete
	case "connection_terminate":
		return kindTerminate
	default:
		return kindUnknown
	}
}

// acknowledge sends connection_ack and, at once, the first ka.
func (legacyWS) acknowledge(c *conn, payload map[string]any) {
	c.writeControlMessage("connection_ack", "", payload)
	c.writeRaw(kaFrame)
}

// subscribeRefusal looks at the payload first: a start without a query is
// refused as such even before connection_ack.
func (legacyWS) subscribeRefusal(acked, hasQuery bool) (refusalReason, bool) {
	switch {
	case !hasQuery:
		return subscribeWithoutQuery, true
	case !acked:
		return subscribeBeforeAck, true
	default:
		return 0, false
	}
}

// replacesRunningID is true: a start for a running id stops that operation
// (silently) and starts the new one.
func (legacyWS) replacesRunningID() bool { return true }

// answerStop confirms the stop with a complete message (whose fields come
// in another order than those of the complete that ends an operation).
func (legacyWS) answerStop(c *conn, id string) {
	c.writeControlMessage("complete", id, nil)
}

// refuse answers with connection_error for what concerns the connection
// (closing it after a refused connection_init, as 4403 or 4400), with an
// operation's error for a start that cannot run, with error for an unknown
// type, and not at all for a stop without id.
func (legacyWS) refuse(c *conn, r refusal) {
	switch r.reason {
	case malformedMessage:
		legacyConnectionError(c, reasonInvalid)
	case unknownType:
		c.writeControlMessage("error", r.id, map[string]any{"message": "Invalid message type!"})
	case repeatedInit:
		legacyConnectionError(c, "Too many initialisation requests")
	case initRefused:
		legacyConnectionError(c, clientText(r.err.Error(), maxInitError))
		closeRefusedInit(c, r.err)
	case subscribeWithoutID:
		legacyConnectionError(c, "start needs an id")
	case subscribeWithoutQuery:
		c.writeErrors(r.id, gqlerror.List{{Message: "invalid payload: a query string is required"}})
	case subscribeBeforeAck:
		c.writeErrors(r.id, gqlerror.List{{Message: "connection_init first"}})
	case completeWithoutID, duplicateID: // nothing to answer; a running id is replaced, never refused
	}
}

// maxInitError is the longest reason a legacy connection_error gives for a
// refused connection_init, in bytes: Options.Init's error message, which may
// quote what the client sent.
const maxInitError = 256

// legacyConnectionError sends a connection_error saying message.
func legacyConnectionError(c *conn, message string) {
	c.writeControlMessage("connection_error", "", map[string]any{"message": message})
}

// resultHead begins a data message.
func (legacyWS) resultHead() []byte { return dataHead }

// keepaliveFrame is ka, which the client does not answer.
func (legacyWS) keepaliveFrame() []byte { return kaFrame }

// dropsSilentClients is false: the protocol has no pong, so a quiet client
// may be alive.
func (legacyWS) dropsSilentClients() bool { return false }
