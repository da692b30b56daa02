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

func TestValidNotification(t *testing.T) {
	type want struct {
		title, body string
		level       models.Level
		link        *string
	}
	cases := []struct {
		name    string
		in      models.NotificationInput
		want    want
		errPart string
	}{
		{name: "title only", in: models.NotificationInput{Title: "Hi"}, want: want{title: "Hi", level: models.LevelInfo}},
		{name: "trimmed", in: models.NotificationInput{Title: "  Hi \n", Body: "\t body  "}, want: want{title: "Hi", body: "body", level: models.LevelInfo}},
		{name: "200-character title, 2000-character body", in: models.NotificationInput{Title: strings.Repeat("ü", 200), Body: strings.Repeat("€", 2000)},
			want: want{title: strings.Repeat("ü", 200), body: strings.Repeat("€", 2000), level: models.LevelInfo}},
		{name: "success", in: models.NotificationInput{Title: "t", Level: ptr(models.LevelSuccess)}, want: want{title: "t", level: models.LevelSuccess}},
		{name: "warning", in: models.NotificationInput{Title: "t", Level: ptr(models.LevelWarning)}, want: want{title: "t", level: models.LevelWarning}},
		{name: "error", in: models.NotificationInput{Title: "t", Level: ptr(models.LevelError)}, want: want{title: "t", level: models.LevelError}},
		{name: "https link", in: models.NotificationInput{Title: "t", Link: ptr("https://example.com/a?b=c#d")},
			want: want{title: "t", level: models.LevelInfo, link: ptr("https://example.com/a?b=c#d")}},
		{name: "http link", in: models.NotificationInput{Title: "t", Link: ptr("HTTP://example.com")},
			want: want{title: "t", level: models.LevelInfo, link: ptr("HTTP://example.com")}},
		{name: "site path", in: models.NotificationInput{Title: "t", Link: ptr("/rooms/1?x=%5C")},
			want: want{title: "t", level: models.LevelInfo, link: ptr("/rooms/1?x=%5C")}},
		{name: "empty link: none", in: models.NotificationInput{Title: "t", Link: ptr("")}, want: want{title: "t", level: models.LevelInfo}},

		{name: "no title", in: models.NotificationInput{Title: ""}, errPart: "title must not be empty"},
		{name: "blank title", in: models.NotificationInput{Title: " \t\n"}, errPart: "title must not be empty"},
		{name: "201-character title", in: models.NotificationInput{Title: strings.Repeat("ü", 201)}, errPart: "title is 201 characters long; the limit is 200"},
		{name: "title not UTF-8", in: models.NotificationInput{Title: "a\xff"}, errPart: "title is not valid UTF-8"},
		{name: "2001-character body", in: models.NotificationInput{Title: "t", Body: strings.Repeat("€", 2001)}, errPart: "body must be at most 2000 characters"},
		{name: "body not UTF-8", in: models.NotificationInput{Title: "t", Body: "\xff"}, errPart: "body"},
		{name: "unknown level", in: models.NotificationInput{Title: "t", Level: ptr(models.Level("fatal"))}, errPart: "level must be info, success, warning or error"},
		{name: "upper-case level", in: models.NotificationInput{Title: "t", Level: ptr(models.Level("INFO"))}, errPart: "level"},
		{name: "javascript link", in: models.NotificationInput{Title: "t", Link: ptr("javascript:alert(1)")}, errPart: "link must be an http(s) URL or a path starting with /"},
		{name: "upper-case javascript link", in: models.NotificationInput{Title: "t", Link: ptr("JavaScript:alert(1)")}, errPart: "link"},
		{name: "data link", in: models.NotificationInput{Title: "t", Link: ptr("data:text/html,<script>alert(1)</script>")}, errPart: "link"},
		{name: "mailto link", in: models.NotificationInput{Title: "t", Link: ptr("mailto:ada@example.com")}, errPart: "link"},
		{name: "ftp link", in: models.NotificationInput{Title: "t", Link: ptr("ftp://example.com/f")}, errPart: "link"},
		{name: "relative path", in: models.NotificationInput{Title: "t", Link: ptr("rooms/1")}, errPart: "link"},
		{name: "protocol-relative link", in: models.NotificationInput{Title: "t", Link: ptr("//evil.example/x")}, errPart: "link"},
		{name: "backslash to another site", in: models.NotificationInput{Title: "t", Link: ptr(`/\evil.example/x`)}, errPart: "link"},
		{name: "http without a host", in: models.NotificationInput{Title: "t", Link: ptr("https:evil.example")}, errPart: "link"},
		{name: "leading space", in: models.NotificationInput{Title: "t", Link: ptr(" /rooms/1")}, errPart: "link"},
		{name: "control character", in: models.NotificationInput{Title: "t", Link: ptr("/\t/evil.example")}, errPart: "link"},
		{name: "link too long", in: models.NotificationInput{Title: "t", Link: ptr("/" + strings.Repeat("a", 2000))}, errPart: "link"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := models.ValidNotification(&tc.in)
			if tc.errPart != "" {
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "error %v", err)
				assert.ErrorContains(t, err, tc.errPart)
				assert.Nil(t, n)
				return
			}
			if !assert.NoError(t, err) {
				return
			}
			assert.Equal(t, tc.want, want{title: n.Title, body: n.Body, level: n.Level, link: n.Link})
			assert.Nil(t, n.RecipientID, "the recipient is the caller's to set")
			assert.Zero(t, n.ID)
		})
	}
}
