package match

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestAutomatonFindsEveryLiteral(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "abcAB -@1"
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 300 {
		var lits []string
		seen := map[string]bool{}
		for range 1 + r.IntN(12) {
			l := strings.ToLower(word(1 + r.IntN(4)))
			if !seen[l] {
				seen[l] = true
				lits = append(lits, l)
			}
		}
		a := newAutomaton(lits)
		for range 20 {
			text := word(r.IntN(40))
			hits := make([]uint64, (len(lits)+63)/64)
			a.scan(text, hits)
			lower := strings.ToLower(text)
			for id, l := range lits {
				want := strings.Contains(lower, l)
				got := hits[id/64]&(1<<(id%64)) != 0
				if got != want {
					t.Fatalf("literal %q in %q: got %v want %v (literals %q)", l, text, got, want, lits)
				}
			}
		}
	}
}

func TestPrefilters(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{`\b\d{3}-\d{2}-\d{4}\b`, `digits>=9/38B`}, // \d is any script's digit, of up to 4 bytes
		{`\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b`, `(["0-" "1-" "2-" "3-" "4-" "5-" "6-" "7-" "8-" "9-"] AND ["0-" "1-" "2-" "3-" "4-" "5-" "6-" "7-" "8-" "9-"] AND digits>=9/11B)`},
		{`ignore`, `["ignore"] (exact)`}, // İ and ı are scanned as i
		{`ignore (all )?previous instructions|run as admin`, `["ignore all previous instructions" "ignore previous instructions" "run as admin"] (exact)`},
		{`[a-z0-9._%+-]+@[a-z0-9-]+\.[a-z]{2,}`, `["@"] (around @)`},
		{`^http://`, `["http://"]`},
		{`api[_-]?key`, `["api-key" "api_key" "apikey"] (exact)`},
		{`\bAKIA[0-9A-Z]{16}\b|-----BEGIN`, `["akia"] | ["-----begin"] (exact)`},
		{`[a-z]+`, "none"},
		{`(?-i)Secret`, `["secret"]`},
	}
	for _, tc := range tests {
		p, err := Compile(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Prefilter(); got != tc.want {
			t.Errorf("%s: prefilter %s, want %s", tc.pattern, got, tc.want)
		}
	}
}

// The prefilters never change a result: on random patterns and texts built to sit on
// every boundary the prefilters reason about (case, digits of any script, anchors, word
// boundaries, characters that case-fold to ASCII), Match agrees with the pattern's
// expression alone.
func TestMatchAgreesWithRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rounds := 1500
	if testing.Short() || raceEnabled {
		rounds = 400
	}
	for range rounds {
		var pats []*Pattern
		var srcs []string
		for range 1 + r.IntN(4) {
			src := randomPattern(r, 3)
			p, err := Compile(src)
			if err != nil {
				continue
			}
			pats = append(pats, p)
			srcs = append(srcs, src)
		}
		set := NewSet(pats)
		for range 30 {
			text := randomText(r)
			for _, tx := range []*Text{set.Scan(text), writeInPieces(r, set, text)} {
				for i, p := range pats {
					want := p.MatchString(text)
					if got := p.Match(tx); got != want {
						t.Fatalf("pattern %q on %q: Match %v, expression %v (prefilter %s)", srcs[i], text, got, want, p.Prefilter())
					}
				}
			}
		}
	}
}

var (
	patternPieces = []string{"ab", "key", "x", "@", "-", "é", "k", "s", "Secret", "12", "a b", "\"", ":", "i", "İ"}
	classPieces   = []string{"[a-z]", `\d`, "[0-9a-f]", `\s`, `[^"]`, ".", "[ -]", "[@.]", `\w`, "[kK]", "[^a]", `\W`, `[^i]`, `[\d_]`, `\D`}
	quantifiers   = []string{"", "", "?", "*", "+", "{2}", "{1,3}", "{3,}"}
	assertions    = []string{`\b`, "^", "$", `\B`}
	textPieces    = []string{"ab", "AB", "key", "KEY", "x", "@", "-", " ", "\n", "é", "É", "\u212a", "\u017f", "s", "S", "1", "12", "123", "9", "\"", ":", "secret", "Secret", "a b", ".", "ſecret", "K", "１２", "٣", "İ", "ı", "i", "\u00a0", "_"}
)

func randomPattern(r *rand.Rand, depth int) string {
	var b strings.Builder
	for range 1 + r.IntN(4) {
		switch k := r.IntN(10); {
		case k < 4:
			b.WriteString(regexp.QuoteMeta(patternPieces[r.IntN(len(patternPieces))]))
		case k < 7:
			b.WriteString(classPieces[r.IntN(len(classPieces))])
		case k < 8:
			b.WriteString(assertions[r.IntN(len(assertions))])
			continue
		default:
			if depth == 0 {
				b.WriteString("z")
				break
			}
			alts := make([]string, 2+r.IntN(2))
			for i := range alts {
				alts[i] = randomPattern(r, depth-1)
			}
			b.WriteString("(" + strings.Join(alts, "|") + ")")
		}
		b.WriteString(quantifiers[r.IntN(len(quantifiers))])
	}
	if depth > 0 && r.IntN(4) == 0 {
		return b.String() + "|" + randomPattern(r, depth-1)
	}
	return b.String()
}

func randomText(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(24) {
		b.WriteString(textPieces[r.IntN(len(textPieces))])
	}
	return b.String()
}

// writeInPieces writes text with a Writer, cut at random characters, each piece by one of
// the Writer's methods.
func writeInPieces(r *rand.Rand, set *Set, text string) *Text {
	var w Writer
	w.Start(set, nil)
	letters := set.Run(NewByteSet(func(b byte) bool { return b >= 'a' && b <= 'z' || b == ' ' }))
	for rest := text; rest != ""; {
		_, size := utf8.DecodeRuneInString(rest)
		for n := r.IntN(4); n > 0 && size < len(rest); n-- {
			_, more := utf8.DecodeRuneInString(rest[size:])
			size += more
		}
		piece := rest[:size]
		rest = rest[size:]
		switch r.IntN(4) {
		case 0:
			w.WriteString(piece)
		case 1:
			w.Write([]byte(piece))
		case 2:
			n := w.WriteRun(piece, letters)
			w.WriteString(piece[n:])
		default:
			for i := 0; i < len(piece); {
				c, size := utf8.DecodeRuneInString(piece[i:])
				if size == 1 {
					w.WriteByte(piece[i])
				} else {
					w.WriteRune(c)
				}
				i += size
			}
		}
	}
	return w.Text(text, func(dst []byte, src any) []byte { return append(dst, src.(string)...) })
}

// A text, written whole or in pieces, is scanned as the automaton scans it with the
// characters that fold to ASCII replaced, and written again as it was.
func TestWriterScansAsReplaced(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var pats []*Pattern
	for _, src := range []string{`secret`, `key|ab`, `\d{3}-\d{2}-\d{4}`, `x@`, `kelvin`, `i[ _]s`} {
		p, err := Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		pats = append(pats, p)
	}
	set := NewSet(pats)
	folded := strings.NewReplacer("\u212a", "k", "\u017f", "s", "\u0130", "i", "\u0131", "i")
	extra := []string{"kelvin", "\u212aelvin", "\xff", "\xe2\x84", "İ s", "kel\u212a", "٣٣٣"}
	for range 3000 {
		text := randomText(r)
		if r.IntN(3) == 0 {
			text += extra[r.IntN(len(extra))]
		}
		hits := make([]uint64, (len(set.lits)+63)/64)
		set.ac.scan(folded.Replace(text), hits)
		digits := 0
		for _, c := range text {
			if unicode.IsDigit(c) {
				digits++
			}
		}
		for _, tx := range []*Text{set.Scan(text), writeInPieces(r, set, text)} {
			if !slices.Equal(tx.hits, hits) || tx.Len() != len(text) {
				t.Fatalf("%q: hits %b, %d bytes; want %b, %d bytes", text, tx.hits, tx.Len(), hits, len(text))
			}
			if tx.hasDigits(digits, -1) != true || tx.hasDigits(digits+1, -1) != false {
				t.Fatalf("%q: not %d digits", text, digits)
			}
			if tx.String() != text {
				t.Fatalf("written again as %q, want %q", tx.String(), text)
			}
		}
	}
}

func FuzzMatchAgreesWithRegexp(f *testing.F) {
	for _, seed := range [][2]string{
		{`\b\d{3}-\d{2}-\d{4}\b`, "ssn 123-45-6789 x"},
		{`[a-z]+@[a-z]+\.com`, "mail a@b.com"},
		{`ignore (all )?previous instructions`, "IGNORE PREVIOUS INSTRUCTIONS"},
		{`kelvin`, "\u212aelvin"},
		{`api[_-]?key`, "API-KEY"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		p, err := Compile(pattern)
		if err != nil {
			return
		}
		set := NewSet([]*Pattern{p})
		if got, want := p.Match(set.Scan(text)), p.MatchString(text); got != want {
			t.Fatalf("pattern %q on %q: Match %v, expression %v (prefilter %s)", pattern, text, got, want, p.Prefilter())
		}
	})
}
