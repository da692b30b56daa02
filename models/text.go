package models

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// The hygiene of what users write. Names (of users and of rooms) are what
// other people read to tell who or what something is, so they go through
// the PRECIS Nickname profile (RFC 8266) and a rule against mixed-script
// words: a name is stored as it will be displayed, and nothing in it is
// invisible or reorders the text around it. Texts (statuses, messages) are
// free-form, but carry no control characters beyond newline and tab.
// docs/design.md says why, and what is not caught.

// DisplayName normalises a display name and checks it is 1..limit
// characters once normalised (field names it in errors). The PRECIS
// Nickname profile (RFC 8266) maps every kind of space to one ASCII space,
// trims and collapses spaces, and applies NFKC, so compatibility variants
// become the characters they stand for ("Ａｄａ", "𝐀𝐝𝐚" and "ⓐⓓⓐ" are
// "Ada", "Ada" and "ada"); emoji presentation selectors (U+FE0E, U+FE0F)
// are dropped. It refuses, with a BadUserInput error: control characters;
// invisible and formatting characters (zero-width spaces and joiners,
// bidirectional controls and overrides, soft hyphens, tags, fillers, the
// blank braille pattern); unassigned code points; and a word whose letters
// mix the Latin, Greek and Cyrillic scripts, the classic look-alike spoof
// ("Аda" with a Cyrillic А). Case is kept; names need not be unique.
func DisplayName(field, name string, limit int) (string, error) {
	if !utf8.ValidString(name) {
		return "", Errorf(BadUserInput, "%s is not valid UTF-8", field)
	}
	name = strings.Map(func(r rune) rune {
		if r == '\uFE0E' || r == '\uFE0F' {
			return -1
		}
		return r
	}, name)
	if strings.TrimFunc(name, unicode.IsSpace) == "" {
		return "", Errorf(BadUserInput, "%s must not be empty", field)
	}
	out, err := precis.Nickname.String(name)
	if err != nil {
		return "", Errorf(BadUserInput, "%s must not contain %s: invisible, formatting and control characters are refused", field, refusedRune(name))
	}
	if strings.ContainsRune(out, '\u2800') {
		return "", Errorf(BadUserInput, "%s must not contain U+2800 (a blank braille pattern, which looks like a space)", field)
	}
	if n := utf8.RuneCountInString(out); n > limit {
		return "", Errorf(BadUserInput, "%s is %d characters long; the limit is %d", field, n, limit)
	}
	for word := range strings.SplitSeq(out, " ") {
		if mixesLookAlikeScripts(word) {
			return "", Errorf(BadUserInput, "%s mixes Latin, Greek or Cyrillic letters in one word (%s), as look-alike spoofs do", field, QuoteInput(word))
		}
	}
	return out, nil
}

// refusedRune names the first character of s that the Nickname profile
// refuses ("U+200B"), or says "characters that are not allowed" when no
// single one is to blame (a joiner is refused by its context).
func refusedRune(s string) string {
	for _, r := range s {
		if unicode.Is(unicode.Zs, r) { // spaces are mapped, never refused
			continue
		}
		if _, err := precis.Nickname.String(string(r)); err != nil {
			return fmt.Sprintf("%U", r)
		}
	}
	return "characters that are not allowed"
}

// lookAlikeScripts are the scripts whose letters are most often confused
// with one another: a word may use one of them, not several.
var lookAlikeScripts = []*unicode.RangeTable{unicode.Latin, unicode.Greek, unicode.Cyrillic}

// mixesLookAlikeScripts reports whether word has letters of more than one
// of lookAlikeScripts.
func mixesLookAlikeScripts(word string) bool {
	seen := -1
	for _, r := range word {
		for i, script := range lookAlikeScripts {
			if unicode.Is(script, r) {
				if seen >= 0 && seen != i {
					return true
				}
				seen = i
			}
		}
	}
	return false
}

// PlainText trims a free-form text (a status, a message) and checks it is
// 1..limit characters of valid UTF-8 (field names it in errors). Line
// breaks are kept, CRLF becoming LF; any other control character (a lone
// CR, escape sequences, NUL, C1 controls) is refused with a BadUserInput
// error.
func PlainText(field, text string, limit int) (string, error) {
	text, err := boundedText(field, strings.ReplaceAll(text, "\r\n", "\n"), limit)
	if err != nil {
		return "", err
	}
	if i := strings.IndexFunc(text, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(text[i:])
		return "", Errorf(BadUserInput, "%s must not contain the control character %U (newline and tab are fine)", field, r)
	}
	return text, nil
}

// maxQuoted is how much of a client's input an error message quotes, in
// bytes.
const maxQuoted = 40

// QuoteInput quotes a client's input for an error message, as %q does, cut
// short (with an ellipsis) past maxQuoted bytes: an error names what it
// refuses without echoing a large input back.
func QuoteInput(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%q…", s[:n])
}
