package evaluator

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"

	"github.com/troy-audit/troy/internal/evaltest"
)

// reprOneRuneAtATime is Python's repr of a string written rune by rune, the plain reading
// of CPython's unicode_repr that writeStrRepr must agree with.
func reprOneRuneAtATime(s string) string {
	var b strings.Builder
	quote := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	b.WriteRune(quote)
	for _, r := range s {
		switch {
		case r == quote || r == '\\':
			b.WriteRune('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80 || unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteRune(quote)
	return b.String()
}

func TestStrRepr(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain text", `'plain text'`},
		{"it's", `"it's"`},
		{`it's "x"`, `'it\'s "x"'`},
		{"a\\b\n\t\r\x00\x7f", `'a\\b\n\t\r\x00\x7f'`},
		{"café ＡＢ", `'café ＡＢ'`},
		{"nbsp\u00a0zw\u200b", `'nbsp\xa0zw\u200b'`},
		{"\U000E0001", `'\U000e0001'`},
		{"bad\xffutf8", "'bad\ufffdutf8'"},
	} {
		if got := string(appendStrRepr(nil, tt.in)); got != tt.want {
			t.Errorf("repr(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	// Random strings mixing every class of character agree with the rune-at-a-time reading.
	alphabet := []rune{'a', 'Z', ' ', '\'', '"', '\\', '\n', '\x01', 0x7f, 0xa0, 'é', 0x200b, 0xff, 0x1F600, 0xE0001, 'Ａ'}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		var sb strings.Builder
		for n := rng.IntN(12); n > 0; n-- {
			sb.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		if rng.IntN(10) == 0 {
			sb.WriteByte(0xfe) // invalid UTF-8
		}
		s := sb.String()
		if got, want := string(appendStrRepr(nil, s)), reprOneRuneAtATime(s); got != want {
			t.Fatalf("repr(%q) = %s, want %s", s, got, want)
		}
	}
}

// A value scanned as its repr is written finds what a scan of the written repr finds, and
// is written again as pyRepr writes it.
func TestTextScannedAsWritten(t *testing.T) {
	// With quotes in literals, and without: the automaton then reads ' and " alike.
	for _, pats := range [][]string{
		{`'a`, `"x`, `\\n`, `\\x01`, `kelvin`, `\d{3}-\d{2}`, `\d{16}`, `café`, `none|true`, `1\.5`, `\\u200b`, `\{'k`},
		{`a\Wx`, `\\n`, `kelvin`, `\d{3}-\d{2}`, `none|true`, `x, K`, `\\\\x`, `xa.*ax`},
	} {
		textScannedAsWritten(t, pats, !strings.ContainsAny(strings.Join(pats, ""), `'"`))
	}
}

func textScannedAsWritten(t *testing.T, pats []string, quotesAlike bool) {
	var conds []string
	for _, p := range pats {
		conds = append(conds, "matches(step.input, `"+p+"`)")
	}
	c, err := Compile(evaltest.PolicyOf(conds...))
	if err != nil {
		t.Fatal(err)
	}
	if c.quotesAlike != quotesAlike {
		t.Fatalf("%q: quotes read alike %v, want %v", pats, c.quotesAlike, quotesAlike)
	}
	s := c.newRunner(&TraceInfo{}, &AgentInfo{})
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "x", "K", "\u212a", "elvin", "'", "\"", "\\", "\n", "\x01", "1", "123-45", "٣", "é", "café", "\u200b", "\xfe", " ", "\U0001F600"}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(9); {
		case k < 3 || depth == 0:
			var sb strings.Builder
			for n := rng.IntN(8); n > 0; n-- {
				sb.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			return sb.String()
		case k == 3:
			return []any{nil, true, 1.5, rng.IntN(1e6)}[rng.IntN(4)]
		case k < 6:
			l := make([]any, rng.IntN(4))
			for i := range l {
				l[i] = value(depth - 1)
			}
			return l
		default:
			m := map[string]any{}
			for n := rng.IntN(4); n > 0; n-- {
				m[value(0).(string)] = value(depth - 1)
			}
			return m
		}
	}
	for range 3000 {
		v := value(3)
		if _, ok := v.(string); ok {
			v = []any{v} // a string is matched as it is, not as its repr
		}
		repr := pyRepr(v)
		text, whole := s.text(v, false), c.set.Scan(repr)
		if text.Len() != len(repr) {
			t.Fatalf("%s: scanned %d bytes, want %d", repr, text.Len(), len(repr))
		}
		for _, p := range pats {
			pat := c.patterns[p]
			want := pat.MatchString(repr)
			if got, scanned := pat.Match(text), pat.Match(whole); got != want || scanned != want {
				t.Fatalf("%s on %s: %v as written, %v scanned whole, want %v", p, repr, got, scanned, want)
			}
		}
		if got := text.String(); got != repr {
			t.Fatalf("written again as %s, want %s", got, repr)
		}
	}
}
