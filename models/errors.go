package models

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies a failure for the client. It is sent as the GraphQL error's
// extensions.code; the set is part of the API contract.
type Code string

// The error codes of the API contract.
const (
	// Unauthenticated: the operation needs a valid token and has none, or an
	// invalid or expired one.
	Unauthenticated Code = "UNAUTHENTICATED"
	// Forbidden: the caller is known but may not do this.
	Forbidden Code = "FORBIDDEN"
	// BadUserInput: an argument is malformed or out of range; the message
	// says which and why.
	BadUserInput Code = "BAD_USER_INPUT"
	// NotFound: the thing does not exist, or the caller may not know that it
	// does.
	NotFound Code = "NOT_FOUND"
	// RateLimited: the caller exceeded a configured rate.
	RateLimited Code = "RATE_LIMITED"
	// Unavailable: a dependency (database, broker) is down; retrying later
	// may succeed.
	Unavailable Code = "UNAVAILABLE"
	// Internal: anything else. Its details are logged, never shown.
	Internal Code = "INTERNAL"

	// BadRequest: the HTTP request is not a GraphQL request the server can
	// read (malformed or batched JSON, a media type or charset it does not
	// take, a body over the size limit, a mutation over GET, a persisted
	// query hash that does not match its query); the message says which.
	// The name is Apollo Server's.
	BadRequest Code = "BAD_REQUEST"
	// PersistedQueryNotFound: an automatic persisted query named only by
	// its hash, which the server does not know (yet): the client sends the
	// query with the hash again. The name is the APQ protocol's.
	PersistedQueryNotFound Code = "PERSISTED_QUERY_NOT_FOUND"
)

// Error is a failure of an operation, in the manner of upspin's errors.E:
// what failed (Op), how the client sees it (Code and Message) and why (Err).
// Only Code and Message ever reach a client, and only when Code is set and
// not Internal; Error, with the operation and the cause, is for the log.
type Error struct {
	// Op names the operation that failed in lowercase words, as a
	// wrapping context would: "create message", "find room 5". Empty for
	// a plain domain refusal (see Errorf).
	Op string
	// Code classifies the failure for the client. Empty means the error
	// has no code of its own: ErrorCode and CodedError look further down
	// the chain of Err, and without a code there the error is internal.
	Code Code
	// Message is the client-facing text: short, with no internals.
	Message string
	// Err is the cause (a driver's or a dependency's error), or nil. Unwrap
	// returns it, so errors.Is and errors.As see through an *Error.
	Err error
}

// Error returns the non-empty ones of Op, Message and Err's text, joined by
// ": " ("create message: the database is unavailable, try again later:
// dial tcp 127.0.0.1:3306: connect: connection refused"), for the log; the
// Code when all three are empty. An error made by Errorf reads as its
// Message alone. It is never shown to a client: use Message.
func (e *Error) Error() string {
	parts := make([]string, 0, 3)
	if e.Op != "" {
		parts = append(parts, e.Op)
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	if e.Err != nil {
		parts = append(parts, e.Err.Error())
	}
	if len(parts) == 0 {
		return string(e.Code)
	}
	return strings.Join(parts, ": ")
}

// Unwrap returns the cause, Err.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns a plain domain refusal: an *Error with the given code and
// formatted message, and no operation or cause.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// E returns the *Error of the operation op that failed because of err (which
// may be nil), with code and a client-facing message formatted from format
// and args. With code "" it has no code of its own (see Error.Code); format
// may then be "", as it may for Internal, whose message no client sees.
//
//	models.E("create message", models.Unavailable, err, "the database is unavailable, try again later")
//	models.E("find room", models.NotFound, err, "room %d not found", id)
func E(op string, code Code, err error, format string, args ...any) *Error {
	return &Error{Op: op, Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// CodedError returns the outermost *Error in err's chain that carries a
// code, the one whose Code and Message the client sees, and whether there
// is one.
func CodedError(err error) (*Error, bool) {
	var e *Error
	for errors.As(err, &e) {
		if e.Code != "" {
			return e, true
		}
		err = e.Err
	}
	return nil, false
}

// ErrorCode returns the code of err: that of CodedError, or Internal when
// err's chain has no code (and "" for a nil err).
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := CodedError(err); ok {
		return e.Code
	}
	return Internal
}
