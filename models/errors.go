package models

import (
	"errors"
	"fmt"
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
)

// Error is a failure whose message is meant for the client. Errors without a
// Code are internal: the client sees "internal error" and the details go to
// the log.
type Error struct {
	Code    Code
	Message string
}

// Error returns the client-facing message.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or Internal
// when there is none (and "" for a nil err).
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}
