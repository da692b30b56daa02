package gqlws

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"testing"
)

// inflate decodes a message's deflate data as RFC 7692 receivers do: with
// 00 00 ff ff put back.
func inflate(t testing.TB, data []byte) []byte {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(data), bytes.NewReader(deflateTail)))
	out, err := io.ReadAll(r)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	return out
}

// TestSharedTailFollowsAnyHead: the compressed result decodes to the same
// bytes after stored heads of any length, the shared frame's premise.
func TestSharedTailFollowsAnyHead(t *testing.T) {
	payload := []byte(`{"data":{"statusPosted":{"id":"7","text":"` + strings.Repeat("abc ", 200) + `"}}}`)
	r := newSharedResult(payload, true)
	for _, id := range []string{`"1"`, `"x"`, `"` + strings.Repeat("i", 1000) + `"`} {
		head := append(append(append([]byte{}, nextHead...), id...), payloadInfix...)
		msg := appendStoredHeader(nil, len(head))
		msg = append(append(msg, head...), r.tail...)
		want := append(append(head, payload...), frameSuffix...)
		if got := inflate(t, msg); !bytes.Equal(got, want) {
			t.Fatalf("id %.10s: got %.80q", id, got)
		}
	}
}

// BenchmarkDeflate is the cost of compressing one result (once per event
// for a shared subscription, once per frame otherwise).
func BenchmarkDeflate(b *testing.B) {
	words := strings.Fields("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use")
	for _, size := range []int{400, 4096} {
		var text strings.Builder
		for r := uint64(1); text.Len() < size; { // prose-like: words in no pattern
			r = r*6364136223846793005 + 1442695040888963407
			text.WriteString(words[(r>>33)%uint64(len(words))] + " ")
		}
		payload := []byte(`{"data":{"statusPosted":{"id":"12345","text":"` + text.String() + `","author":{"id":"3","name":"ada"}}}}`)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = len(appendDeflated(nil, payload, frameSuffix))
			}
			b.ReportMetric(float64(n)/float64(len(payload)+1), "ratio")
		})
	}
}
