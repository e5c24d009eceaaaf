// Package match runs the case-insensitive regular expressions of policy conditions cheaply.
//
// Regular expressions over whole step inputs are the costly part of evaluating a policy. For
// each pattern this package derives a set of literal strings, at least one of which occurs
// (ignoring case) in every text the pattern matches. One Aho-Corasick pass over a text finds
// which literals of all of a policy's patterns occur in it; a pattern whose literals are all
// absent cannot match, and its regular expression is never run on that text. The prefilter
// only ever skips texts the pattern cannot match, so results are those of the regular
// expression alone.
package match

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"
)

// Limits on literal sets: a bigger set, or shorter literals, filter too little to pay for
// themselves.
const (
	maxLiterals   = 64
	minLiteralLen = 2
)

// Pattern is a compiled case-insensitive regular expression.
type Pattern struct {
	Source string
	re     *regexp.Regexp
	lits   []string // lower-cased literals; nil when the pattern has no prefilter
	ids    []int    // indexes of lits in the Set that holds the pattern
}

// Compile compiles pattern with case-insensitive matching, as the matches() helper uses.
// The syntax is RE2's (https://github.com/google/re2/wiki/Syntax): linear time, no
// backreferences or look-around.
func Compile(pattern string) (*Pattern, error) {
	re, err := regexp.Compile("(?i)" + pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, unwrapSyntax(err))
	}
	p := &Pattern{Source: pattern, re: re}
	if parsed, err := syntax.Parse("(?i)"+pattern, syntax.Perl); err == nil {
		if lits, ok := required(parsed.Simplify()); ok {
			p.lits = lits
		}
	}
	return p, nil
}

func unwrapSyntax(err error) error {
	if se, ok := err.(*syntax.Error); ok {
		return fmt.Errorf("%s: `%s`", se.Code, se.Expr)
	}
	return err
}

// Literals returns the pattern's prefilter literals, lower-cased; nil if it has none.
func (p *Pattern) Literals() []string { return p.lits }

// MatchString reports whether the pattern matches anywhere in text.
func (p *Pattern) MatchString(text string) bool { return p.re.MatchString(text) }

// Match reports whether the pattern matches anywhere in a text whose literal hits were
// found by Scan of the Set the pattern belongs to.
func (p *Pattern) Match(t *Text) bool {
	if p.ids != nil && !t.anyHit(p.ids) {
		return false
	}
	return p.re.MatchString(t.s)
}

// required returns literals at least one of which occurs, ignoring ASCII case, in every text
// that re matches; ok is false when no useful set is known.
func required(re *syntax.Regexp) (lits []string, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		lit := longestASCIIRun(re.Rune)
		if len(lit) < minLiteralLen {
			return nil, false
		}
		return []string{strings.ToLower(lit)}, true
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if l, ok := required(sub); ok && better(l, best) {
				best = l
			}
		}
		return best, best != nil
	case syntax.OpAlternate:
		seen := map[string]bool{}
		for _, sub := range re.Sub {
			l, ok := required(sub)
			if !ok {
				return nil, false
			}
			for _, s := range l {
				if !seen[s] {
					seen[s] = true
					lits = append(lits, s)
				}
			}
		}
		if len(lits) > maxLiterals {
			return nil, false
		}
		return lits, true
	}
	return nil, false
}

// better prefers the set whose shortest literal is longest, then the smaller set.
func better(a, b []string) bool {
	if b == nil {
		return true
	}
	ma, mb := shortest(a), shortest(b)
	if ma != mb {
		return ma > mb
	}
	return len(a) < len(b)
}

func shortest(l []string) int {
	m := -1
	for _, s := range l {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

// longestASCIIRun returns the longest stretch of ASCII characters in a literal. Non-ASCII
// letters have case variants the ASCII-only automaton would miss, so they are left out.
func longestASCIIRun(rs []rune) string {
	var best, cur []rune
	for _, r := range rs {
		if r < 0x80 {
			cur = append(cur, r)
			if len(cur) > len(best) {
				best = cur
			}
			continue
		}
		cur = nil
	}
	return string(best)
}

// Set holds the patterns of one policy and an automaton over all their literals.
type Set struct {
	patterns []*Pattern
	lits     []string
	ac       *ahocorasick.AhoCorasick
}

// NewSet builds the automaton over the literals of the given patterns and ties each pattern
// to it. A pattern belongs to at most one Set.
func NewSet(patterns []*Pattern) *Set {
	s := &Set{patterns: patterns}
	index := map[string]int{}
	for _, p := range patterns {
		if p.lits == nil {
			continue
		}
		p.ids = make([]int, len(p.lits))
		for i, l := range p.lits {
			id, ok := index[l]
			if !ok {
				id = len(s.lits)
				index[l] = id
				s.lits = append(s.lits, l)
			}
			p.ids[i] = id
		}
	}
	if len(s.lits) > 0 {
		b := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
			AsciiCaseInsensitive: true,
			MatchKind:            ahocorasick.StandardMatch,
			DFA:                  true,
		})
		ac := b.Build(s.lits)
		s.ac = &ac
	}
	return s
}

// Literals is the number of distinct literals in the set's automaton.
func (s *Set) Literals() int { return len(s.lits) }

// Text is a string prepared for matching against a Set's patterns.
type Text struct {
	s    string
	hits []uint64
}

// Scan finds which of the set's literals occur in text, in one pass.
func (s *Set) Scan(text string) *Text {
	t := &Text{s: text}
	if s.ac == nil {
		return t
	}
	t.hits = make([]uint64, (len(s.lits)+63)/64)
	// The Kelvin sign and the long s are the only non-ASCII characters that case-fold to
	// ASCII letters; map them so the ASCII-insensitive automaton sees every text the
	// case-insensitive regular expression would match.
	hay := strings.ReplaceAll(strings.ReplaceAll(text, "\u212a", "k"), "\u017f", "s")
	it := s.ac.IterOverlapping(hay)
	for m := it.Next(); m != nil; m = it.Next() {
		id := m.Pattern()
		t.hits[id/64] |= 1 << (id % 64)
	}
	return t
}

// String returns the scanned text.
func (t *Text) String() string { return t.s }

func (t *Text) anyHit(ids []int) bool {
	if t.hits == nil {
		return false
	}
	for _, id := range ids {
		if t.hits[id/64]&(1<<(id%64)) != 0 {
			return true
		}
	}
	return false
}
