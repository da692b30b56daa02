package app

import (
	"slices"
	"strings"
)

// corsBaseHeaders are the request headers every preflight from an allowed
// origin grants, whatever it asks for.
var corsBaseHeaders = []string{"Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"}

// maxReflectedHeaders bounds how many requested header names a preflight
// answer repeats.
const maxReflectedHeaders = 32

// corsAllowHeaders is the Access-Control-Allow-Headers answer of a
// preflight from an allowed origin: the base headers plus every header
// the preflight's Access-Control-Request-Headers asks for (requested), as
// Apollo Server and Hasura do, so that clients' own headers
// (apollographql-client-name and -version, tracing headers) need no
// setting. The origin check is what keeps other sites out; which headers
// a trusted page sends is its own business. Names that are not valid
// header names are dropped, and at most maxReflectedHeaders are repeated.
func corsAllowHeaders(requested string) string {
	out := append([]string(nil), corsBaseHeaders...)
	reflected := 0
	for name := range strings.SplitSeq(requested, ",") {
		name = strings.TrimSpace(name)
		if !validHeaderName(name) || reflected == maxReflectedHeaders {
			continue
		}
		if !slices.ContainsFunc(out, func(n string) bool { return strings.EqualFold(n, name) }) {
			out = append(out, name)
			reflected++
		}
	}
	return strings.Join(out, ", ")
}

// validHeaderName reports whether name is an HTTP field name: a non-empty
// token (RFC 9110, section 5.1) of at most 128 characters.
func validHeaderName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
