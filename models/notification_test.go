package models_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/models"
)

// TestInInbox: a notification to a user is theirs whenever it was sent, to
// another user never, and a broadcast is theirs from the second they were
// created on.
func TestInInbox(t *testing.T) {
	created := time.Date(2025, 3, 1, 12, 0, 0, 700_000_000, time.UTC)
	ada := &models.User{ID: 1, CreatedAt: created}
	to := func(id int64) *int64 { return &id }
	cases := []struct {
		name string
		n    models.Notification
		want bool
	}{
		{name: "to her, before she existed", n: models.Notification{RecipientID: to(1), CreatedAt: created.Add(-time.Hour)}, want: true},
		{name: "to someone else", n: models.Notification{RecipientID: to(2), CreatedAt: created.Add(time.Hour)}, want: false},
		{name: "broadcast later", n: models.Notification{CreatedAt: created.Add(time.Hour)}, want: true},
		{name: "broadcast in her second, before her", n: models.Notification{CreatedAt: created.Truncate(time.Second)}, want: true},
		{name: "broadcast the millisecond before her second", n: models.Notification{CreatedAt: created.Truncate(time.Second).Add(-time.Millisecond)}, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.n.InInbox(ada))
		})
	}
}
