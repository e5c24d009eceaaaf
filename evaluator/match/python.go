package match

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
)

// Patterns mean what they mean to the Python tool, which searches them with Python's re
// module and re.IGNORECASE on str:
//
//   - \d is any Unicode decimal digit (Nd); \w any letter or number of any script, or _;
//     \s any Unicode white space; \b and \B see those word characters.
//   - $ (without (?m)) matches at the end of the text or before a final \n; \Z is the end.
//   - Ignoring case, i also matches İ (U+0130) and ı (U+0131), as Python folds them.
//
// Patterns are parsed with Go's regexp/syntax (RE2 syntax) after rewriting Python's
// escapes, and run on vm.go, whose assertions follow Python: matching stays linear in the
// text.

// pyWordClass is \w's class body: letters and numbers of every script, and _.
const pyWordClass = `\p{L}\p{N}_`

// pySpaces are the characters Python's str.isspace accepts: \s.
var pySpaces = []rune{
	'\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ', 0x85, 0xa0, 0x1680,
	0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
	0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
}

func isPySpace(r rune) bool { return slices.Contains(pySpaces, r) }

// isWord is Python's word character in str patterns: alphanumeric (letters, and digits
// and numbers of every kind) or _.
func isWord(r rune) bool {
	if r < 0x80 {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}

func isNotDigit(r rune) bool { return !unicode.IsDigit(r) }
func isNotWord(r rune) bool  { return !isWord(r) }
func isNotSpace(r rune) bool { return !isPySpace(r) }

// classBody writes the ranges of runes that satisfy in, for use inside a [...] class.
func classBody(in func(rune) bool) string {
	var b strings.Builder
	for lo := rune(0); lo <= unicode.MaxRune; lo++ {
		if !in(lo) {
			continue
		}
		hi := lo
		for hi < unicode.MaxRune && in(hi+1) {
			hi++
		}
		fmt.Fprintf(&b, `\x{%x}-\x{%x}`, lo, hi)
		lo = hi
	}
	return b.String()
}

func spaceBody() string {
	var b strings.Builder
	for _, r := range pySpaces {
		fmt.Fprintf(&b, `\x{%x}`, r)
	}
	return b.String()
}

// translate rewrites Python's escapes that RE2 reads differently: \d, \w, \s and their
// negations become Unicode classes, \Z the end of the text, and [\b] a backspace. Classes
// of categories are not case-folded, in Python as here: (?-i:...) also spares the parser
// folding every letter.
func translate(p string) string {
	var b strings.Builder
	class := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			i++
			e := p[i]
			switch {
			case e == 'd':
				b.WriteString(`\p{Nd}`)
			case e == 'D' && !class:
				b.WriteString(`(?-i:\P{Nd})`)
			case e == 'D':
				b.WriteString(classBody(isNotDigit))
			case e == 'w' && class:
				b.WriteString(pyWordClass)
			case e == 'w':
				b.WriteString("(?-i:[" + pyWordClass + "])")
			case e == 'W' && class:
				b.WriteString(classBody(isNotWord))
			case e == 'W':
				b.WriteString("(?-i:[^" + pyWordClass + "])")
			case e == 's' && class:
				b.WriteString(spaceBody())
			case e == 's':
				b.WriteString("(?-i:[" + spaceBody() + "])")
			case e == 'S' && class:
				b.WriteString(classBody(isNotSpace))
			case e == 'S':
				b.WriteString("(?-i:[^" + spaceBody() + "])")
			case e == 'Z' && !class:
				b.WriteString(`\z`)
			case e == 'b' && class:
				b.WriteString(`\x08`)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case class:
			b.WriteByte(c)
			class = c != ']'
		case c == '[':
			b.WriteByte(c)
			class = true
			if i+1 < len(p) && p[i+1] == '^' {
				i++
				b.WriteByte('^')
			}
			if i+1 < len(p) && p[i+1] == ']' {
				i++ // a ] first in a class is a literal
				b.WriteByte(']')
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parsePython parses a pattern as matches() reads it: Python's escapes, case ignored.
func parsePython(pattern string) (*syntax.Regexp, error) {
	re, err := syntax.Parse(translate(pattern), syntax.Perl|syntax.FoldCase)
	if err != nil {
		return nil, err
	}
	return foldTurkishI(re), nil
}

// The letters Python equates with i when ignoring case; Go's folding has only i and I.
var turkishI = []rune{'I', 'I', 'i', 'i', 0x130, 0x131}

func isTurkishI(r rune) bool { return r == 'I' || r == 'i' || r == 0x130 || r == 0x131 }

// foldTurkishI rewrites case-insensitive i, I, İ and ı, in literals and classes, so that
// each matches all four, as Python's re.IGNORECASE does.
func foldTurkishI(re *syntax.Regexp) *syntax.Regexp {
	for i, sub := range re.Sub {
		re.Sub[i] = foldTurkishI(sub)
	}
	fold := re.Flags&syntax.FoldCase != 0
	switch {
	case re.Op == syntax.OpLiteral && fold && slices.ContainsFunc(re.Rune, isTurkishI):
		var parts []*syntax.Regexp
		run := []rune{}
		flush := func() {
			if len(run) > 0 {
				parts = append(parts, &syntax.Regexp{Op: syntax.OpLiteral, Flags: re.Flags, Rune: run})
				run = []rune{}
			}
		}
		for _, r := range re.Rune {
			if isTurkishI(r) {
				flush()
				parts = append(parts, &syntax.Regexp{Op: syntax.OpCharClass, Flags: re.Flags, Rune: slices.Clone(turkishI)})
				continue
			}
			run = append(run, r)
		}
		flush()
		if len(parts) == 1 {
			return parts[0]
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: parts}
	case re.Op == syntax.OpCharClass && fold:
		re.Rune = foldClassI(re.Rune)
	}
	return re
}

// foldClassI makes a case-folded class hold all of i, I, İ and ı or none of them. Go's
// folding already put i and I together; İ and ı alone in a class mean either that they
// were named ([ı]) or that i was excluded ([^i]), which the class's size tells apart.
func foldClassI(ranges []rune) []rune {
	has := func(r rune) bool { return inClass(ranges, r) }
	ascii, dotted, dotless := has('i') || has('I'), has(0x130), has(0x131)
	if ascii == dotted && ascii == dotless {
		return ranges
	}
	var size int64
	for i := 0; i+1 < len(ranges); i += 2 {
		size += int64(ranges[i+1]-ranges[i]) + 1
	}
	add := ascii || size < unicode.MaxRune/2
	var out []rune
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		for _, r := range []rune{'I', 'i', 0x130, 0x131} {
			if !add && lo <= r && r <= hi { // cut r out of the range
				if lo < r {
					out = append(out, lo, r-1)
				}
				lo = r + 1
			}
		}
		if lo <= hi {
			out = append(out, lo, hi)
		}
	}
	if add {
		out = append(out, turkishI...)
	}
	return normalizeRanges(out)
}

// normalizeRanges sorts ranges and merges overlapping or adjacent ones.
func normalizeRanges(r []rune) []rune {
	type span struct{ lo, hi rune }
	spans := make([]span, 0, len(r)/2)
	for i := 0; i+1 < len(r); i += 2 {
		spans = append(spans, span{r[i], r[i+1]})
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.lo - b.lo) })
	out := make([]rune, 0, len(r))
	for _, s := range spans {
		if n := len(out); n > 0 && s.lo <= out[n-1]+1 {
			out[n-1] = max(out[n-1], s.hi)
			continue
		}
		out = append(out, s.lo, s.hi)
	}
	return out
}

// matcher searches a text for a compiled pattern.
type matcher interface {
	MatchString(s string) bool
}

// compilePython compiles a pattern with Python's meaning; it returns the parsed
// expression too, simplified, for the prefilter.
func compilePython(pattern string) (matcher, *syntax.Regexp, error) {
	re, err := parsePython(pattern)
	if err != nil {
		return nil, nil, err
	}
	re = re.Simplify()
	m, err := compileVM(re)
	return m, re, err
}
