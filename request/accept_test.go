package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/request"
)

func TestAccepted(t *testing.T) {
	type entry struct {
		value string
		q     float64
	}
	var got []entry
	for v, q := range request.Accepted(` Application/JSON;charset=utf-8, text/event-stream;q=0.5 ,, gzip;Q=0 ,br;q=zero, */*`) {
		got = append(got, entry{v, q})
	}
	assert.Equal(t, []entry{{"application/json", 1}, {"text/event-stream", 0.5}, {"gzip", 0}, {"br", -1}, {"*/*", 1}}, got)
}
