// Package gqlscalar holds Switchboard's own bindings of GraphQL scalars:
// ID backed by int64 (the type of every database identifier in models) and
// Time with a fixed millisecond layout. gqlgen finds the Marshal/Unmarshal
// functions by name through gqlgen.yml. Input that does not parse is a
// models.BadUserInput error.
package gqlscalar

import (
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/switchboardhq/switchboard/models"
)

// MarshalInt64ID writes id as a GraphQL ID, which is a JSON string.
func MarshalInt64ID(id int64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(strconv.FormatInt(id, 10)))
	})
}

// UnmarshalInt64ID reads a GraphQL ID given as a string or a number holding a
// decimal integer.
func UnmarshalInt64ID(v any) (int64, error) {
	switch v := v.(type) {
	case string:
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, models.Errorf(models.BadUserInput, "%q is not a valid ID", v)
		}
		return id, nil
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case json.Number:
		return v.Int64()
	default:
		return 0, models.Errorf(models.BadUserInput, "an ID must be a string, not %T", v)
	}
}

// timeLayout is RFC 3339 in UTC with exactly three fractional digits, so
// every Time the API returns has the same width and sorts as text.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalTime writes t in UTC as RFC 3339 with millisecond precision.
func MarshalTime(t time.Time) graphql.Marshaler {
	if t.IsZero() {
		return graphql.Null
	}
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(t.UTC().Format(timeLayout)))
	})
}

// UnmarshalTime reads an RFC 3339 string.
func UnmarshalTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, models.Errorf(models.BadUserInput, "a Time must be an RFC 3339 string, not %T", v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, models.Errorf(models.BadUserInput, "%q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}
