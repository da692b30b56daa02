package models_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// errRefused stands for a driver's error.
var errRefused = errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  *models.Error
		want string
	}{
		{
			name: "refusal: the message alone",
			err:  models.Errorf(models.BadUserInput, "first must be between 1 and %d", 100),
			want: "first must be between 1 and 100",
		},
		{
			name: "op, message and cause",
			err:  models.E("create message", models.Unavailable, errRefused, "the database is unavailable, try again later"),
			want: "create message: the database is unavailable, try again later: dial tcp 127.0.0.1:3306: connect: connection refused",
		},
		{
			name: "formatted message",
			err:  models.E("find room", models.NotFound, fs.ErrNotExist, "room %d not found", 5),
			want: "find room: room 5 not found: file does not exist",
		},
		{
			name: "no message",
			err:  models.E("list rooms", "", errRefused, ""),
			want: "list rooms: dial tcp 127.0.0.1:3306: connect: connection refused",
		},
		{
			name: "no cause",
			err:  models.E("find room", models.NotFound, nil, "room 5 not found"),
			want: "find room: room 5 not found",
		},
		{
			name: "nested",
			err:  models.E("post message", "", models.E("create message", models.Unavailable, errRefused, "unavailable"), ""),
			want: "post message: create message: unavailable: dial tcp 127.0.0.1:3306: connect: connection refused",
		},
		{
			name: "nothing but a code",
			err:  &models.Error{Code: models.Internal},
			want: "INTERNAL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	err := models.E("create message", models.Unavailable, errRefused, "the database is unavailable, try again later")
	assert.Same(t, errRefused, errors.Unwrap(err), "Unwrap returns the cause")
	assert.ErrorIs(t, err, errRefused)
	assert.ErrorIs(t, fmt.Errorf("post: %w", err), errRefused, "through further wrapping")
	assert.NoError(t, errors.Unwrap(models.Errorf(models.NotFound, "room 5 not found")), "a refusal has no cause")

	// The cause's own chain stays reachable.
	var pathErr *fs.PathError
	cause := &fs.PathError{Op: "open", Path: "/data", Err: fs.ErrPermission}
	err = models.E("open database", "", cause, "")
	require.ErrorAs(t, err, &pathErr)
	assert.Same(t, cause, pathErr)
	assert.ErrorIs(t, err, fs.ErrPermission)
}

func TestE(t *testing.T) {
	err := models.E("find room", models.NotFound, errRefused, "room %d not found", 5)
	assert.Equal(t, &models.Error{Op: "find room", Code: models.NotFound, Message: "room 5 not found", Err: errRefused}, err)
}

func TestErrorCodeThroughChains(t *testing.T) {
	notFound := models.E("find room", models.NotFound, errRefused, "room 5 not found")
	tests := []struct {
		name string
		err  error
		want models.Code
		msg  string // the Message of CodedError; "" when it finds none
	}{
		{name: "nil", err: nil, want: ""},
		{name: "plain error", err: errRefused, want: models.Internal},
		{name: "refusal", err: models.Errorf(models.Forbidden, "admins only"), want: models.Forbidden, msg: "admins only"},
		{name: "E", err: notFound, want: models.NotFound, msg: "room 5 not found"},
		{name: "under fmt.Errorf", err: fmt.Errorf("resolve: %w", notFound), want: models.NotFound, msg: "room 5 not found"},
		{name: "under an E without a code", err: models.E("post message", "", notFound, ""), want: models.NotFound, msg: "room 5 not found"},
		{
			name: "the outermost code wins",
			err:  models.E("post message", models.Unavailable, notFound, "try again later"),
			want: models.Unavailable, msg: "try again later",
		},
		{name: "E without a code over a plain error", err: models.E("list rooms", "", errRefused, ""), want: models.Internal},
		{
			name: "internal hides the codes below",
			err:  models.E("migrate", models.Internal, notFound, "migration failed"),
			want: models.Internal, msg: "migration failed",
		},
		{name: "in a join", err: errors.Join(errRefused, notFound), want: models.NotFound, msg: "room 5 not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, models.ErrorCode(tt.err))
			coded, ok := models.CodedError(tt.err)
			assert.Equal(t, tt.msg != "", ok)
			if ok {
				assert.Equal(t, tt.msg, coded.Message)
			}
		})
	}
}
