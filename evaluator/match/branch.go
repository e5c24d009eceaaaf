package match

import (
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxBranches bounds how many top-level alternatives a pattern is split into.
const maxBranches = 16

// branch is one top-level alternative of a pattern: a text matches the pattern when it
// matches any branch, so each branch can be filtered, and run, on its own.
type branch struct {
	re matcher
	q  *query // necessary condition; nil: none known
	// exact is set when q is a literal set holding every string the branch matches, so a
	// hit is a match and the expression need not run at all.
	exact bool
	// anchor, when set, is a literal without letters that every match contains, and
	// closure the bytes a match can contain: the expression then only runs on the runs of
	// closure bytes around each occurrence of anchor, not on the whole text.
	anchor  string
	closure *[256]bool
}

// branches splits a pattern into separately filtered top-level alternatives. A pattern
// that is one set of literals stays whole.
func branches(full matcher, parsed *syntax.Regexp) []*branch {
	whole := newBranch(parsed, full)
	if whole.exact || parsed.Op != syntax.OpAlternate || len(parsed.Sub) < 2 || len(parsed.Sub) > maxBranches {
		return []*branch{whole}
	}
	// The alternatives are split on the parsed tree, not on the text, so quoting (\Q…\E),
	// classes and flag groups can never be cut apart.
	out := make([]*branch, 0, len(parsed.Sub))
	for _, sub := range parsed.Sub {
		m, err := compileVM(sub)
		if err != nil {
			return []*branch{whole}
		}
		out = append(out, newBranch(sub, m))
	}
	return out
}

func newBranch(re *syntax.Regexp, compiled matcher) *branch {
	in := analyse(re)
	b := &branch{re: compiled, q: simplify(closed(in))}
	b.exact = in.exact != nil && b.q != nil && b.q.op == 'l' && len(b.q.lits) == len(in.exact) && plain(re)
	if b.exact || !unanchored(re) {
		return b
	}
	if lit := anchorLiteral(b.q); lit != "" {
		var c [256]bool
		if closure(re, &c) {
			b.anchor, b.closure = lit, &c
		}
	}
	return b
}

func (b *branch) String() string {
	s := "none"
	if b.q != nil {
		s = b.q.String()
	}
	if b.exact {
		s += " (exact)"
	}
	if b.anchor != "" {
		s += " (around " + b.anchor + ")"
	}
	return s
}

func (b *branch) match(t *Text) bool {
	if b.q != nil && !b.q.eval(t) {
		return false
	}
	if b.exact {
		return true
	}
	if b.anchor != "" {
		if found, ok := b.around(t.String()); ok {
			return found
		}
	}
	return b.re.MatchString(t.String())
}

// maxAnchors bounds the occurrences around which a branch runs before it falls back to a
// search of the whole text.
const maxAnchors = 32

// around runs the expression on the stretch of closure bytes around each occurrence of the
// anchor, with one character of context on each side for \b. Every match contains the
// anchor and only closure bytes, so it lies inside one such stretch; ok is false when
// there are too many occurrences to be worth it.
func (b *branch) around(s string) (found, ok bool) {
	c := b.closure
	end := 0 // stretches are searched left to right and never twice
	for n, i := 0, 0; ; n++ {
		j := strings.Index(s[i:], b.anchor)
		if j < 0 {
			return false, true
		}
		if n == maxAnchors {
			return false, false
		}
		at := i + j
		lo, hi := at, at+len(b.anchor)
		for lo > end && c[s[lo-1]] {
			lo--
		}
		for hi < len(s) && c[s[hi]] {
			hi++
		}
		// The characters next to the stretch are not in it (the stretch is as long as
		// closure bytes go), but \b looks at them: a whole character on each side.
		wlo, whi := lo, hi
		if wlo > 0 {
			_, w := utf8.DecodeLastRuneInString(s[:wlo])
			wlo -= w
		}
		if whi < len(s) {
			_, w := utf8.DecodeRuneInString(s[whi:])
			whi += w
		}
		if b.re.MatchString(s[wlo:whi]) {
			return true, true
		}
		// Occurrences before hi are in this stretch.
		end, i = hi, max(hi, at+1)
	}
}

// anchorLiteral returns a single literal without letters that q requires, if any.
func anchorLiteral(q *query) string {
	if q == nil {
		return ""
	}
	candidates := []*query{q}
	if q.op == 'a' {
		candidates = q.subs
	}
	for _, c := range candidates {
		if c.op == 'l' && len(c.lits) == 1 && !strings.ContainsFunc(c.lits[0], isLetter) {
			return c.lits[0]
		}
	}
	return ""
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// unanchored reports whether an expression has no line or text anchors, which a search of
// part of a text would see in the wrong places.
func unanchored(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText, syntax.OpEmptyMatch:
		return false
	}
	for _, sub := range re.Sub {
		if !unanchored(sub) {
			return false
		}
	}
	return true
}

// closure marks every byte a match of re can contain; it reports false when that is
// every byte. Any non-ASCII character marks all bytes from 0x80 up.
func closure(re *syntax.Regexp, c *[256]bool) bool {
	mark := func(lo, hi rune) {
		for r := lo; r <= hi && r < 0x80; r++ {
			c[r] = true
		}
		if hi >= 0x80 {
			for b := 0x80; b < 256; b++ {
				c[b] = true
			}
		}
	}
	switch re.Op {
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return false
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			mark(r, r)
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					mark(f, f)
				}
			}
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			mark(re.Rune[i], re.Rune[i+1])
		}
	}
	for _, sub := range re.Sub {
		if !closure(sub, c) {
			return false
		}
	}
	return true
}
