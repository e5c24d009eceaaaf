package explainer

import (
	"encoding/base64"
	"strings"
)

// Values hidden in encodings: base64 runs that decode to text holding a sensitive value
// are replaced whole; percent-encoded runs are decoded and redacted as text.
var (
	// A part of a URL with a percent escape, or with + between words as forms write
	// spaces; parts end at ? & = as query strings do.
	percentRunRe = lazyRegexp(`[^\s"'<>\\?&=]*(?:%[0-9A-Fa-f]{2}|\w\+[\w%])[^\s"'<>\\?&=]*`)
	// What a form leaves of a value when it encodes it: + for spaces, %XX for the rest.
	formEncodedRe = lazyRegexp(`^[A-Za-z0-9_.~*+%-]+$`)
)

// maxDecodeDepth bounds how many encodings are undone one inside another (base64 of a
// URL-encoded text of base64 …).
const maxDecodeDepth = 3

// encoded adds the base64 runs of the text whose decoded text holds a finding; the run
// takes the kind of what it holds.
func (rs *rules) encoded(sc *scan, depth int) {
	if depth >= maxDecodeDepth || len(sc.s) < 12 {
		return
	}
	runs(sc.s, &tokenChars, 12, func(start, end int) {
		text, ok := decodeBase64(sc.s[start:end])
		if !ok {
			return
		}
		inner := rs.find(text, depth+1)
		if len(inner) == 0 && strings.ContainsAny(text, "%+") {
			inner = rs.find(percentDecode(text), depth+1)
		}
		if len(inner) > 0 {
			sc.add(start, end, merge(text, inner)[0].kind)
		}
	})
}

// decodeBase64 decodes a run in any of the four base64 alphabets and paddings, when what
// it decodes to is text.
func decodeBase64(run string) (string, bool) {
	trimmed := strings.TrimRight(run, "=")
	if len(trimmed)%4 == 1 || !mixedCase(trimmed) {
		return "", false // no base64 length, or a word: base64 of text mixes cases
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(trimmed); err == nil && len(raw) >= 6 && printable(string(raw)) {
			return string(raw), true
		}
	}
	return "", false
}

func mixedCase(s string) bool {
	var lower, upper bool
	for i := 0; i < len(s) && !(lower && upper); i++ {
		lower = lower || s[i] >= 'a' && s[i] <= 'z'
		upper = upper || s[i] >= 'A' && s[i] <= 'Z'
	}
	return lower && upper
}

// percentDecode undoes percent-encoding, up to maxDecodeDepth times for text encoded more
// than once; malformed escapes are kept as they are.
func percentDecode(s string) string {
	for range maxDecodeDepth {
		if !strings.Contains(s, "%") {
			break
		}
		var b strings.Builder
		changed := false
		for i := 0; i < len(s); i++ {
			if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
				i += 2
				changed = true
				continue
			}
			b.WriteByte(s[i])
		}
		if !changed {
			break
		}
		s = b.String()
	}
	return s
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
