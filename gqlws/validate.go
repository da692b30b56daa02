package gqlws

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// What a client sends is checked before any of it can reach a frame of the
// server's: a text message must be valid UTF-8 (else the connection closes
// with 1007, as RFC 6455 section 8.1 orders), an operation id is at most
// MaxIDLength bytes (else the message is invalid: 4400, or connection_error
// on the legacy protocol), and a ping or pong payload is an object (else
// 4400, as the graphql-ws specification's message validation says). What
// is left of the client's input in the server's frames is then bounded and
// valid: ids in result frames, the ping payload a pong echoes. Close reasons
// get a last guard of their own (closeReason), because a control frame
// carries at most 125 bytes.

// MaxIDLength is the longest operation id, in bytes. A message with a longer
// id is invalid.
const MaxIDLength = 128

// maxCloseReason is the longest close reason: a close frame's payload is at
// most 125 bytes (RFC 6455 section 5.5), two of which hold the code.
const maxCloseReason = 123

// closeReason returns reason as a close frame may carry it: valid UTF-8 of
// at most maxCloseReason bytes, cut at a character boundary (the reasons are
// the server's own, so a cut is a safety net, not a plan).
func closeReason(reason string) string {
	return truncateUTF8(strings.ToValidUTF8(reason, "\uFFFD"), maxCloseReason)
}

// subscriberExistsReason is the reason of 4409 for id, as the reference
// server words it ("Subscriber for <id> already exists"), with the id cut
// short (and marked with an ellipsis) where the whole would not fit in a
// close frame.
func subscriberExistsReason(id string) string {
	const prefix, suffix, ellipsis = "Subscriber for ", " already exists", "…"
	if len(prefix)+len(id)+len(suffix) > maxCloseReason {
		id = truncateUTF8(id, maxCloseReason-len(prefix)-len(suffix)-len(ellipsis)) + ellipsis
	}
	return prefix + id + suffix
}

// clientText returns a message that may quote what a client sent (an init
// refusal's reason, on the legacy protocol) as valid UTF-8 of at most max
// bytes.
func clientText(s string, max int) string {
	return truncateUTF8(strings.ToValidUTF8(s, "\uFFFD"), max)
}

// truncateUTF8 returns the longest prefix of s, which must be valid UTF-8,
// of at most n bytes that ends at a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// objectOrNull reports whether raw, a JSON value or nothing, is absent, null
// or an object: what a ping, pong or connection_init payload may be.
func objectOrNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || raw[0] == '{' || bytes.Equal(raw, []byte("null"))
}
