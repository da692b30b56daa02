package models_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/models"
)

func TestRoomSearch(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{name: "trimmed", in: "  ops ", want: "ops"},
		{name: "blank searches nothing out", in: " \t ", want: ""},
		{name: "as long as a name", in: strings.Repeat("é", 50), want: strings.Repeat("é", 50)},
		{name: "longer", in: strings.Repeat("é", 51), err: "search is 51 characters long; the limit is 50"},
		{name: "invalid UTF-8", in: "a\xffb", err: "search is not valid UTF-8"},
	}
	for _, tc := range cases {
		got, err := models.RoomSearch(tc.in)
		if tc.err == "" {
			assert.Equal(t, tc.want, got, tc.name)
			assert.NoError(t, err, tc.name)
			continue
		}
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), tc.name)
		assert.EqualError(t, err, tc.err, tc.name)
	}
}

// TestRoomPlaceOrder: joined rooms first, then by activity (newest first),
// then by id (highest first).
func TestRoomPlaceOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ordered := []models.RoomPlace{
		{Joined: true, ActiveAt: t0.Add(time.Second), ID: 1},
		{Joined: true, ActiveAt: t0, ID: 9},
		{Joined: true, ActiveAt: t0, ID: 2},
		{Joined: false, ActiveAt: t0.Add(time.Hour), ID: 3},
		{Joined: false, ActiveAt: t0, ID: 4},
	}
	for i, p := range ordered {
		for j, q := range ordered {
			assert.Equal(t, i < j, p.Before(q), "%v before %v", p, q)
		}
	}
}

// TestOnlineListsAreBounded: 50 users unless asked, at most 100.
func TestOnlineListsAreBounded(t *testing.T) {
	p := &models.Presence{}
	for i := range 300 {
		p.Online = append(p.Online, &models.User{ID: int64(i + 1), Name: fmt.Sprint("u", i)})
	}
	n := func(first *int) int {
		users, err := p.Users(first)
		assert.NoError(t, err)
		return len(users)
	}
	ptr := func(i int) *int { return &i }
	assert.Equal(t, 50, n(nil))
	assert.Equal(t, 0, n(ptr(0)))
	assert.Equal(t, 100, n(ptr(100)))
	for _, bad := range []int{-1, 101} {
		_, err := p.Users(ptr(bad))
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "first %d", bad)
	}
	assert.Equal(t, 300, p.Count(), "the count counts everyone")
}
