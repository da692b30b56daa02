package models_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/models"
)

// ruleCase is an input of a validation rule and what the rule makes of it:
// want, or a BadUserInput error containing errPart.
type ruleCase struct{ name, in, want, errPart string }

// checkRule runs every case through each of the functions that apply the
// rule (named by their keys).
func checkRule(t *testing.T, cases []ruleCase, rule map[string]func(string) (string, error)) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for fn, check := range rule {
				got, err := check(tc.in)
				if tc.errPart != "" {
					assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "%s: %v", fn, err)
					assert.ErrorContains(t, err, tc.errPart, fn)
					continue
				}
				assert.NoError(t, err, fn)
				assert.Equal(t, tc.want, got, fn)
			}
		})
	}
}

// TestDisplayName: what user and room names normalise to, and what they
// refuse.
func TestDisplayName(t *testing.T) {
	cases := []ruleCase{
		// Kept as they are.
		{name: "ASCII", in: "Ada Lovelace", want: "Ada Lovelace"},
		{name: "accents", in: "Zoë Nuñez", want: "Zoë Nuñez"},
		{name: "Greek", in: "Σωκράτης", want: "Σωκράτης"},
		{name: "Cyrillic", in: "Алиса", want: "Алиса"},
		{name: "Cyrillic and Latin words side by side", in: "Алиса Smith", want: "Алиса Smith"},
		{name: "Arabic", in: "ليلى", want: "ليلى"},
		{name: "Japanese", in: "山田 たろう", want: "山田 たろう"},
		{name: "emoji", in: "Ada 🚀", want: "Ada 🚀"},
		{name: "emoji with a skin tone", in: "👍🏽 Bo", want: "👍🏽 Bo"},
		{name: "flag", in: "🇫🇷 Jules", want: "🇫🇷 Jules"},
		{name: "punctuation", in: "O'Brien-Smith (ops)", want: "O'Brien-Smith (ops)"},
		{name: "case kept", in: "ADA", want: "ADA"},
		{name: "50 characters", in: strings.Repeat("ü", 50), want: strings.Repeat("ü", 50)},

		// Normalised.
		{name: "trimmed", in: "  Ada  ", want: "Ada"},
		{name: "spaces collapsed", in: "Ada   Lovelace", want: "Ada Lovelace"},
		{name: "other spaces become one ASCII space", in: "Ada\u00a0\u3000Lovelace", want: "Ada Lovelace"},
		{name: "fullwidth letters", in: "Ａｄｍｉｎ", want: "Admin"},
		{name: "mathematical bold letters", in: "𝐀𝐝𝐦𝐢𝐧", want: "Admin"},
		{name: "fraktur letters", in: "ℌ𝔢𝔩𝔩𝔬", want: "Hello"},
		{name: "circled letters", in: "ⓐⓓⓐ", want: "ada"},
		{name: "ligature", in: "ﬁona", want: "fiona"},
		{name: "decomposed accent composed", in: "Zoe\u0308", want: "Zoë"},
		{name: "emoji presentation selector dropped", in: "Ada ❤️", want: "Ada ❤"},
		{name: "normalised before the length limit", in: strings.Repeat("ﬀ", 25), want: strings.Repeat("ff", 25)},

		// Refused.
		{name: "empty", in: "", errPart: "must not be empty"},
		{name: "blank", in: " \t ", errPart: "must not be empty"},
		{name: "only ideographic spaces", in: "\u3000\u3000", errPart: "must not be empty"},
		{name: "51 characters", in: strings.Repeat("x", 51), errPart: "51 characters long; the limit is 50"},
		{name: "longer once normalised", in: strings.Repeat("ﬀ", 26), errPart: "52 characters long; the limit is 50"},
		{name: "invalid UTF-8", in: "Ada\xff", errPart: "not valid UTF-8"},
		{name: "NUL", in: "Ada\x00", errPart: "U+0000"},
		{name: "bell", in: "a\x07b", errPart: "control"},
		{name: "newline", in: "Ada\nLovelace", errPart: "U+000A"},
		{name: "tab", in: "Ada\tLovelace", errPart: "U+0009"},
		{name: "C1 control", in: "Ada\u0085", errPart: "U+0085"},
		{name: "zero-width space", in: "Ad\u200ba", errPart: "U+200B"},
		{name: "zero-width joiner between letters", in: "Ad\u200da", errPart: "U+200D"},
		{name: "zero-width non-joiner", in: "Ad\u200ca", errPart: "U+200C"},
		{name: "word joiner", in: "Ad\u2060a", errPart: "U+2060"},
		{name: "byte order mark", in: "\ufeffAda", errPart: "U+FEFF"},
		{name: "right-to-left override", in: "evil\u202Etxt.exe", errPart: "U+202E"},
		{name: "left-to-right override", in: "\u202DAda", errPart: "U+202D"},
		{name: "right-to-left isolate", in: "Ada\u2067x", errPart: "U+2067"},
		{name: "right-to-left mark", in: "Ada\u200f", errPart: "U+200F"},
		{name: "soft hyphen", in: "Ad\u00ada", errPart: "U+00AD"},
		{name: "combining grapheme joiner", in: "Ad\u034fa", errPart: "U+034F"},
		{name: "Hangul filler", in: "\u3164", errPart: "U+3164"},
		{name: "tag character", in: "Ada\U000E0041", errPart: "U+E0041"},
		{name: "blank braille pattern", in: "\u2800", errPart: "U+2800"},
		{name: "unassigned code point", in: "Ada\U0003FFFD", errPart: "U+3FFFD"},
		{name: "private use", in: "Ada\ue000", errPart: "U+E000"},
		{name: "emoji joined by a zero-width joiner", in: "👨\u200d👩\u200d👧", errPart: "U+200D"},
		{name: "Cyrillic А in a Latin name", in: "Аlice", errPart: "mixes Latin, Greek or Cyrillic"},
		{name: "Cyrillic о in a Latin word", in: "Bob Smіth", errPart: `"Smіth"`},
		{name: "Greek ο in a Latin name", in: "Bοb", errPart: "mixes"},
	}
	checkRule(t, cases, map[string]func(string) (string, error){"UserName": models.UserName, "RoomName": models.RoomName})
}

// TestPlainText: status and message texts keep newlines and tabs and
// refuse every other control character.
func TestPlainText(t *testing.T) {
	cases := []ruleCase{
		{name: "lines and tabs", in: "first line\n\tindented\nlast", want: "first line\n\tindented\nlast"},
		{name: "CRLF becomes LF", in: "a\r\nb", want: "a\nb"},
		{name: "trimmed", in: "\n  hi \r\n", want: "hi"},
		{name: "bidi and zero-width characters are text", in: "مرحبا hello\u200b", want: "مرحبا hello\u200b"},
		{name: "emoji sequences are text", in: "👨\u200d👩\u200d👧 ❤️", want: "👨\u200d👩\u200d👧 ❤️"},
		{name: "lone CR", in: "a\rb", errPart: "U+000D"},
		{name: "NUL", in: "a\x00b", errPart: "U+0000"},
		{name: "escape sequence", in: "\x1b[31mred", errPart: "U+001B"},
		{name: "bell", in: "ding\x07", errPart: "U+0007"},
		{name: "DEL", in: "a\x7f", errPart: "U+007F"},
		{name: "C1 control", in: "a\u009bb", errPart: "U+009B"},
		{name: "vertical tab", in: "a\vb", errPart: "U+000B"},
		{name: "form feed", in: "a\fb", errPart: "U+000C"},
		{name: "empty", in: "\r\n", errPart: "must not be empty"},
		{name: "invalid UTF-8", in: "a\xffb", errPart: "UTF-8"},
	}
	checkRule(t, cases, map[string]func(string) (string, error){"StatusText": models.StatusText, "MessageText": models.MessageText})
}

// TestKPIName: module and key names follow their pattern, and an error
// quotes at most 40 bytes of what it refuses.
func TestKPIName(t *testing.T) {
	cases := []struct {
		name, in, errPart string
	}{
		{name: "demo module", in: "finance"},
		{name: "digits, dash and underscore", in: "q3_sales-eu"},
		{name: "32 characters", in: "a" + strings.Repeat("b", 31)},
		{name: "empty", in: "", errPart: `module "": 1..32 characters`},
		{name: "33 characters", in: "a" + strings.Repeat("b", 32), errPart: "1..32 characters"},
		{name: "upper case", in: "Finance", errPart: `"Finance"`},
		{name: "leading digit", in: "1finance", errPart: "a lower-case letter"},
		{name: "space", in: "fin ance", errPart: "module"},
		{name: "fullwidth look-alike", in: "ｆｉｎａｎｃｅ", errPart: "module"},
		{name: "long input quoted short", in: strings.Repeat("x", 5000), errPart: `module "` + strings.Repeat("x", 40) + `"…: `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := models.KPIName("module", tc.in)
			if tc.errPart == "" {
				assert.NoError(t, err)
				return
			}
			assert.Equal(t, models.BadUserInput, models.ErrorCode(err))
			assert.ErrorContains(t, err, tc.errPart)
			assert.Less(t, len(err.Error()), 200, "the input is not echoed whole")
		})
	}
}

func TestQuoteInput(t *testing.T) {
	assert.Equal(t, `"short"`, models.QuoteInput("short"))
	assert.Equal(t, `"`+strings.Repeat("a", 40)+`"`, models.QuoteInput(strings.Repeat("a", 40)))
	assert.Equal(t, `"`+strings.Repeat("a", 40)+`"…`, models.QuoteInput(strings.Repeat("a", 41)))
	assert.Equal(t, `"`+strings.Repeat("é", 20)+`"…`, models.QuoteInput(strings.Repeat("é", 30)), "cut at a character boundary")
	assert.Equal(t, `"a\xff"`, models.QuoteInput("a\xff"))
}
