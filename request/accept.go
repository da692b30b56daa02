package request

import (
	"iter"
	"strconv"
	"strings"
)

// Accepted yields the values an Accept or Accept-Encoding header lists, in
// order: each media type or content coding in lower case, without its
// parameters, and its quality: 1 unless a q parameter says otherwise, and
// -1 for a q that is not a number, which each caller reads its own way
// (as the preference it names, or as a refusal).
func Accepted(header string) iter.Seq2[string, float64] {
	return func(yield func(string, float64) bool) {
		for part := range strings.SplitSeq(header, ",") {
			value, params, _ := strings.Cut(part, ";")
			value = strings.ToLower(strings.TrimSpace(value))
			if value == "" {
				continue
			}
			q := 1.0
			for param := range strings.SplitSeq(params, ";") {
				name, v, _ := strings.Cut(param, "=")
				if strings.EqualFold(strings.TrimSpace(name), "q") {
					var err error
					if q, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || q != q { // NaN
						q = -1
					}
				}
			}
			if !yield(value, q) {
				return
			}
		}
	}
}
