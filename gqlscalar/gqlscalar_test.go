package gqlscalar_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/gqlscalar"
	"github.com/switchboardhq/switchboard/models"
)

func TestInt64ID(t *testing.T) {
	var b bytes.Buffer
	gqlscalar.MarshalInt64ID(9007199254740993).MarshalGQL(&b)
	assert.Equal(t, `"9007199254740993"`, b.String(), "IDs are strings, exact beyond 2^53")

	for in, want := range map[any]int64{"42": 42, 7: 7, int64(8): 8, json.Number("9"): 9} {
		got, err := gqlscalar.UnmarshalInt64ID(in)
		require.NoError(t, err, "%v", in)
		assert.Equal(t, want, got)
	}
	for _, in := range []any{"abc", "1.5", 1.5, nil} {
		_, err := gqlscalar.UnmarshalInt64ID(in)
		assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%v", in)
	}
}

func TestTime(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 11, 23, 13, 5, 0, 120_000_000, time.FixedZone("CET", 3600))
	gqlscalar.MarshalTime(at).MarshalGQL(&b)
	assert.Equal(t, `"2026-11-23T12:05:00.120Z"`, b.String(), "UTC, always three fractional digits")

	got, err := gqlscalar.UnmarshalTime("2026-11-23T13:05:00.12+01:00")
	require.NoError(t, err)
	assert.True(t, got.Equal(at))
	assert.Equal(t, time.UTC, got.Location())
	_, err = gqlscalar.UnmarshalTime("yesterday")
	assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
	_, err = gqlscalar.UnmarshalTime(12)
	assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
}
