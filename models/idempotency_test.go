package models_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/models"
)

// TestIdempotencyKey: what a key may be.
func TestIdempotencyKey(t *testing.T) {
	checkRule(t, []ruleCase{
		{name: "UUID", in: "8e03978e-40d5-43e8-bc93-6894a57f9324", want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{name: "one character", in: "x", want: "x"},
		{name: "every visible ASCII character", in: "!~AZaz09+/=_-.:\"\\", want: "!~AZaz09+/=_-.:\"\\"},
		{name: "the longest", in: strings.Repeat("k", 128), want: strings.Repeat("k", 128)},
		{name: "empty", in: "", errPart: "must be 1..128 characters long (got 0)"},
		{name: "too long", in: strings.Repeat("k", 129), errPart: "must be 1..128 characters long (got 129)"},
		{name: "a space", in: "a b", errPart: "only visible ASCII"},
		{name: "a tab", in: "a\tb", errPart: "only visible ASCII"},
		{name: "a newline", in: "a\nb", errPart: "only visible ASCII"},
		{name: "DEL", in: "a\x7f", errPart: "only visible ASCII"},
		{name: "non-ASCII", in: "clé", errPart: "only visible ASCII"},
	}, map[string]func(string) (string, error){"IdempotencyKey": models.IdempotencyKey})
}

// TestNewIdempotency: no key is no keyed write; the fingerprint tells
// arguments apart and nothing else.
func TestNewIdempotency(t *testing.T) {
	ada := &models.User{ID: 7, Name: "ada"}
	none, err := models.NewIdempotency(nil, models.OpPostStatus, "", "hello")
	require.NoError(t, err)
	assert.Nil(t, none, "no key, no keyed write, even without a user")

	k, err := models.NewIdempotency(ada, models.OpPostStatus, "k", "hello")
	require.NoError(t, err)
	assert.Equal(t, int64(7), k.UserID)
	assert.Equal(t, models.OpPostStatus, k.Operation)
	assert.Equal(t, "k", k.Key)
	assert.Len(t, k.Fingerprint, 64, "hex SHA-256")

	same, err := models.NewIdempotency(ada, models.OpPostStatus, "other key", "hello")
	require.NoError(t, err)
	assert.Equal(t, k.Fingerprint, same.Fingerprint, "the arguments alone")
	other, err := models.NewIdempotency(ada, models.OpPostStatus, "k", "hello!")
	require.NoError(t, err)
	assert.NotEqual(t, k.Fingerprint, other.Fingerprint)
	a, err := models.NewIdempotency(ada, models.OpPostMessage, "k", []any{int64(1), "12"})
	require.NoError(t, err)
	b, err := models.NewIdempotency(ada, models.OpPostMessage, "k", []any{int64(11), "2"})
	require.NoError(t, err)
	assert.NotEqual(t, a.Fingerprint, b.Fingerprint, "arguments do not run together")

	_, err = models.NewIdempotency(ada, models.OpRecordKPIs, "k", math.NaN())
	assert.Error(t, err, "arguments that do not encode")

	assert.Equal(t, models.BadUserInput, models.ErrorCode(k.Reused()))
	assert.EqualError(t, k.Reused(), `idempotencyKey "k" was used for another postStatus with other arguments; a new write needs a new key`)
}
