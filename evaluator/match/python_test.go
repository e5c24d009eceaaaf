package match

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// Each case is what Python's re.search(pattern, text, re.IGNORECASE) answers.
func TestPythonSemantics(t *testing.T) {
	tests := []struct {
		pattern, text string
		want          bool
	}{
		// Case folding: i also matches İ and ı, k the Kelvin sign, s the long s.
		{`ignore previous instructions`, "IGNORE PREVIOUS INSTRUCTIONS", true},
		{`ignore previous instructions`, "\u0130GNORE PREV\u0130OUS \u0130NSTRUCT\u0130ONS", true},
		{`ignore previous instructions`, "\u0131gnore prev\u0131ous \u0131nstruct\u0131ons", true},
		{`İ`, "i", true},
		{`ı`, "I", true},
		{`kill`, "\u212aILL", true},
		{`shell`, "\u017fhell", true},
		{`[a-z]+x`, "\u0130x", true},
		{`[^i]`, "\u0130", false},
		{`[^i]`, "\u0131", false},
		{`[^i]`, "j", true},
		{`(?-i:i)`, "I", false},
		{`é`, "É", true},
		// \d is any decimal digit; [0-9] only ASCII.
		{`\b\d{3}-\d{2}-\d{4}\b`, "１２３-４５-６７８９", true},
		{`[0-9]{3}`, "１２３", false},
		{`\d`, "²", false}, // superscript two is a number, not a decimal digit
		{`\D`, "٣", false},
		// \w and \b see letters and numbers of every script.
		{`\bSELECT\b`, "éSELECT 1", false},
		{`\bSELECT\b`, "1SELECT", false},
		{`\bSELECT\b`, "drop-SELECT", true},
		{`\bSELECT\b`, "SELECTé", false},
		{`\bSELECT\b`, "SELECT_x", false},
		{`\w`, "é", true},
		{`\w`, "\u0301", false}, // a combining accent is not a word character
		{`\w`, "Ⅻ", true},
		{`\W`, "é", false},
		{`[\w-]+$`, "é-x", true},
		{`\B`, "é", false},
		{`a\Bé`, "aé", true},
		{`\bé`, "aé", false},
		// $ matches at the end or before one final newline; \Z only at the end.
		{`^(bash)$`, "bash", true},
		{`^(bash)$`, "bash\n", true},
		{`^(bash)$`, "bash\n\n", false},
		{`^(bash)$`, "bash ", false},
		{`^(bash)$`, "run_bash", false},
		{`bash$`, "x\nbash\n", true},
		{`bash\Z`, "bash\n", false},
		{`bash\Z`, "bash", true},
		{`(?m)^bash$`, "x\nbash\ny", true},
		{`^bash`, "x\nbash", false},
		// . is anything but \n.
		{`a.b`, "a\nb", false},
		{`a.b`, "a\u2028b", true},
		{`(?s)a.b`, "a\nb", true},
		// \s is Unicode white space.
		{`password\s*[:=]`, "password\u00a0: x", true},
		{`password\s*[:=]`, "password\u200b: x", false},
		{`a\sb`, "a\vb", true},
		{`a\Sb`, "a\u3000b", false},
		{`[\s]`, "\u2003", true},
		{`[\b]`, "\x08", true},
		// A bare word is a substring test.
		{`(delete|drop|kill|rm|format|truncate)`, "inform_user", true},
		{`(delete|drop|kill|rm|format|truncate)`, "read_file", false},
		{`api.?key`, "api'key", true},
		{`api.?key`, `api\'key`, false},
	}
	for _, tc := range tests {
		p, err := Compile(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		set := NewSet([]*Pattern{p})
		if got := p.MatchString(tc.text); got != tc.want {
			t.Errorf("search %q in %q: %v, want %v", tc.pattern, tc.text, got, tc.want)
		}
		if got := p.Match(set.Scan(tc.text)); got != tc.want {
			t.Errorf("search %q in %q with prefilter %s: %v, want %v", tc.pattern, tc.text, p.Prefilter(), got, tc.want)
		}
	}
}

// On ASCII texts that do not end in a newline Python's assertions mean what Go's do, so
// the automaton of vm.go and Go's regexp, given the same parsed expression, must agree.
func TestVMAgreesWithGoRegexpOnASCII(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"ab", "AB", "key", "KEY", "x", "@", "-", " ", "\n", "s", "S", "1", "12", "123", "\"", ":", "secret", "a b", ".", "_", "i", "I"}
	rounds := 3000
	if testing.Short() || raceEnabled {
		rounds = 600
	}
	for range rounds {
		src := randomPattern(r, 3)
		parsed, err := parsePython(src)
		if err != nil || strings.ContainsAny(src, "éİ") {
			continue
		}
		parsed = parsed.Simplify()
		m, err := compileVM(parsed)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		want := regexp.MustCompile(parsed.String())
		for range 20 {
			var b strings.Builder
			for range r.IntN(16) {
				b.WriteString(pieces[r.IntN(len(pieces))])
			}
			text := strings.TrimRight(b.String(), "\n")
			if got := m.MatchString(text); got != want.MatchString(text) {
				t.Fatalf("pattern %q (%s) on %q: vm %v, regexp %v", src, parsed, text, got, !got)
			}
		}
	}
}

func TestCompileErrorsNameThePattern(t *testing.T) {
	_, err := Compile(`(unclosed`)
	if err == nil || !strings.Contains(err.Error(), "(unclosed") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
}

// Where case is not ignored, İ and ı are themselves only, prefilter or not.
func TestCaseSensitiveTurkishI(t *testing.T) {
	for _, tc := range []struct {
		pattern, text string
		want          bool
	}{
		{`(?-i:İ)`, "i", false},
		{`(?-i:İ)`, "İ", true},
		{`(?-i:[İ0])`, "i", false},
		{`(?-i:ı)x`, "ix", false},
	} {
		p, err := Compile(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		set := NewSet([]*Pattern{p})
		if got := p.Match(set.Scan(tc.text)); got != tc.want || p.MatchString(tc.text) != tc.want {
			t.Errorf("%q in %q: %v, want %v (prefilter %s)", tc.pattern, tc.text, got, tc.want, p.Prefilter())
		}
	}
}

func FuzzVMAgreesWithGoRegexpOnASCII(f *testing.F) {
	for _, seed := range [][2]string{
		{`\bSELECT\b`, "x SELECT y"},
		{`^(bash|shell)$`, "bash"},
		{`a\Bb|\d+`, "ab 12"},
		{`(?m)^x$`, "a\nx\nb"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		for _, s := range []string{pattern, text} {
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					return
				}
			}
		}
		if strings.HasSuffix(text, "\n") {
			return // Python's $ also matches before a final newline
		}
		parsed, err := parsePython(pattern)
		if err != nil {
			return
		}
		parsed = parsed.Simplify()
		m, err := compileVM(parsed)
		if err != nil {
			return
		}
		want, err := regexp.Compile(parsed.String())
		if err != nil {
			return
		}
		if got := m.MatchString(text); got != want.MatchString(text) {
			t.Fatalf("pattern %q (%s) on %q: vm %v, regexp %v", pattern, parsed, text, got, !got)
		}
	})
}
