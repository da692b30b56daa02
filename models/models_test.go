package models_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/models"
)

func TestStatusText(t *testing.T) {
	cases := []struct {
		name, in, want, errPart string
	}{
		{name: "trimmed", in: "  hi \n", want: "hi"},
		{name: "empty", in: "", errPart: "must not be empty"},
		{name: "blank", in: " \t\n ", errPart: "must not be empty"},
		{name: "500 runes", in: strings.Repeat("ü", 500), want: strings.Repeat("ü", 500)},
		{name: "501 runes", in: strings.Repeat("ü", 501), errPart: "501 characters long; the limit is 500"},
		{name: "invalid UTF-8", in: "a\xffb", errPart: "UTF-8"},
		{name: "markup kept as text", in: "<b>x</b>", want: "<b>x</b>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := models.StatusText(tc.in)
			if tc.errPart != "" {
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
				assert.ErrorContains(t, err, tc.errPart)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestUserName(t *testing.T) {
	cases := []struct {
		name, in, want, errPart string
	}{
		{name: "trimmed", in: " Ada ", want: "Ada"},
		{name: "empty", in: " ", errPart: "empty"},
		{name: "too long", in: strings.Repeat("x", 51), errPart: "limit is 50"},
		{name: "control character", in: "a\x07b", errPart: "control"},
		{name: "unicode", in: "Zoë 🚀", want: "Zoë 🚀"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := models.UserName(tc.in)
			if tc.errPart != "" {
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
				assert.ErrorContains(t, err, tc.errPart)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseRole(t *testing.T) {
	r, err := models.ParseRole(" Admin ")
	assert.NoError(t, err)
	assert.Equal(t, models.RoleAdmin, r)
	_, err = models.ParseRole("root")
	assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
}

func TestErrorCode(t *testing.T) {
	assert.Equal(t, models.Code(""), models.ErrorCode(nil))
	assert.Equal(t, models.Internal, models.ErrorCode(errors.New("boom")))
	wrapped := fmt.Errorf("outer: %w", models.Errorf(models.NotFound, "status %d not found", 4))
	assert.Equal(t, models.NotFound, models.ErrorCode(wrapped))
	assert.Equal(t, "outer: status 4 not found", wrapped.Error())
}
