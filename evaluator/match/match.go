// Package match runs the regular expressions of policy conditions, with the meaning the
// Python tool's matches() gives them (case ignored, Python's re semantics: python.go),
// cheaply.
//
// Regular expressions over whole step inputs are the costly part of evaluating a policy:
// an automaton (vm.go, like Go's own engine) spends tens of nanoseconds per byte of text. For each pattern this package derives a prefilter: a
// condition that every text the pattern matches satisfies, built from
//
//   - literals: sets of strings one of which must occur (ignoring case), found for all of a
//     policy's patterns at once by one Aho-Corasick pass over the text; and
//   - digit density: a least number of digits that must occur within the longest span a
//     match can cover, as numbers such as card or social security numbers need.
//
// A pattern whose prefilter fails on a text cannot match it, and its regular expression is
// not run. The prefilter only ever skips texts the pattern cannot match, so results are
// exactly those of the regular expression.
//
// It imports the standard library only.
package match

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pattern is a compiled case-insensitive regular expression.
type Pattern struct {
	Source   string
	re       matcher
	branches []*branch // the pattern's top-level alternatives, each with its prefilter
}

// Compile compiles pattern as the matches() helper searches it: ignoring case, with the
// meaning Python's re module gives it (see python.go). The syntax is RE2's
// (https://github.com/google/re2/wiki/Syntax): linear time, no backreferences or
// look-around.
func Compile(pattern string) (*Pattern, error) {
	re, parsed, err := compilePython(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, unwrapSyntax(err))
	}
	return &Pattern{Source: pattern, re: re, branches: branches(re, parsed)}, nil
}

func unwrapSyntax(err error) error {
	if se, ok := err.(*syntax.Error); ok {
		return fmt.Errorf("%s: `%s`", se.Code, se.Expr)
	}
	return err
}

// Prefilter describes the pattern's prefilter, for tests and diagnostics.
func (p *Pattern) Prefilter() string {
	parts := make([]string, len(p.branches))
	for i, b := range p.branches {
		parts[i] = b.String()
	}
	return strings.Join(parts, " | ")
}

// MatchString reports whether the pattern matches anywhere in text.
func (p *Pattern) MatchString(text string) bool { return p.re.MatchString(text) }

// Match reports whether the pattern matches anywhere in a text prepared by Scan of the Set
// the pattern belongs to.
func (p *Pattern) Match(t *Text) bool {
	for _, r := range t.results {
		if r.p == p {
			return r.matched
		}
	}
	matched := false
	for _, b := range p.branches {
		if b.match(t) {
			matched = true
			break
		}
	}
	t.results = append(t.results, result{p, matched})
	return matched
}

// plain reports whether an expression has no assertions (^, $, \b…) and matches letters
// regardless of case, so that its exact strings, matched ignoring ASCII case, are all it
// matches.
func plain(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return false
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			for _, r := range re.Rune {
				// İ and ı fold to nothing in Go but are scanned as i.
				if unicode.SimpleFold(r) != r || r == '\u0130' || r == '\u0131' {
					return false
				}
			}
		}
	case syntax.OpCharClass:
		// İ and ı are scanned as i: a class holding them is plain only with i and I too.
		hasI := inClass(re.Rune, 'i') && inClass(re.Rune, 'I')
		if (inClass(re.Rune, '\u0130') || inClass(re.Rune, '\u0131')) && !hasI {
			return false
		}
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1] && r < utf8.RuneSelf; r++ {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					if !inClass(re.Rune, f) {
						return false
					}
				}
			}
		}
	}
	for _, sub := range re.Sub {
		if !plain(sub) {
			return false
		}
	}
	return true
}

func inClass(ranges []rune, r rune) bool {
	for i := 0; i+1 < len(ranges); i += 2 {
		if r >= ranges[i] && r <= ranges[i+1] {
			return true
		}
	}
	return false
}

// query is a necessary condition on texts: an AND or OR of sub-queries, a set of literals
// one of which occurs, or a number of digits within a span. nil means "always true".
type query struct {
	op   byte // 'a' and, 'o' or, 'l' literals, 'd' digits
	subs []*query
	lits []string // lower-case ASCII, for 'l'
	// words marks the literals in the Set's automaton: bit b of words[k].bits is literal
	// 64*words[k].index+b. Checking a set is one AND per word it touches.
	words []wordMask
	// For 'd': at least digits digits within some span of width bytes (width < 0: anywhere).
	digits, width int
}

func (q *query) String() string {
	switch q.op {
	case 'l':
		return fmt.Sprintf("%q", q.lits)
	case 'd':
		if q.width < 0 {
			return fmt.Sprintf("digits>=%d", q.digits)
		}
		return fmt.Sprintf("digits>=%d/%dB", q.digits, q.width)
	}
	parts := make([]string, len(q.subs))
	for i, s := range q.subs {
		parts[i] = s.String()
	}
	sep := " AND "
	if q.op == 'o' {
		sep = " OR "
	}
	return "(" + strings.Join(parts, sep) + ")"
}

func (q *query) eval(t *Text) bool {
	switch q.op {
	case 'a':
		for _, s := range q.subs {
			if !s.eval(t) {
				return false
			}
		}
		return true
	case 'o':
		for _, s := range q.subs {
			if s.eval(t) {
				return true
			}
		}
		return false
	case 'l':
		return t.anyHit(q.words)
	case 'd':
		return t.hasDigits(q.digits, q.width)
	}
	return true
}

// Limits on prefilters: too many literals, or too few digits, filter too little to pay.
const (
	maxLiterals = 64
	minDigits   = 4
)

// info is what is known about a node of a parsed expression. String sets hold lower-cased
// ASCII; nil means unknown.
type info struct {
	// exact lists every string the node can match, so that neighbours can be joined into
	// longer, more selective literals.
	exact []string
	// prefix and suffix, for a node that is not exact, list strings every match starts
	// or ends with.
	prefix, suffix []string
	q              *query // necessary condition besides the sets above; nil: none known
	digits         int    // least number of digits any match contains
	width          int    // most bytes any match spans; -1: unbounded
}

// maxExact bounds the strings a set may grow to by joining neighbours.
const maxExact = 64

// pre and suf return the strings every match of the node starts or ends with.
func (in info) pre() []string {
	if in.exact != nil {
		return in.exact
	}
	return in.prefix
}

func (in info) suf() []string {
	if in.exact != nil {
		return in.exact
	}
	return in.suffix
}

func analyse(re *syntax.Regexp) info {
	switch re.Op {
	case syntax.OpLiteral:
		in := info{}
		for _, r := range re.Rune {
			if r >= '0' && r <= '9' {
				in.digits++
			}
			in.width += runeWidth(r, re.Flags&syntax.FoldCase != 0)
		}
		if lit, ok := asciiLower(re.Rune); ok {
			in.exact = []string{lit}
		} else if lit, ok := literal(re.Rune); ok {
			in.q = &query{op: 'l', lits: []string{lit}}
		}
		return in
	case syntax.OpCharClass:
		in := info{width: classWidth(re.Rune), exact: classChars(re.Rune)}
		if onlyDigits(re.Rune) {
			in.digits = 1
		}
		return in
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return info{width: utf8.UTFMax}
	case syntax.OpCapture:
		return analyse(re.Sub[0])
	case syntax.OpStar:
		return info{width: -1}
	case syntax.OpQuest:
		sub := analyse(re.Sub[0])
		in := info{width: sub.width}
		if sub.exact != nil {
			in.exact = union(sub.exact, []string{""})
		}
		return in
	case syntax.OpPlus, syntax.OpRepeat:
		sub := analyse(re.Sub[0])
		in := info{digits: sub.digits, width: -1}
		if re.Op == syntax.OpRepeat {
			in.digits = sub.digits * re.Min
			if re.Max >= 0 && sub.width >= 0 {
				in.width = sub.width * re.Max
			}
			if re.Min < 1 {
				return in
			}
		}
		in.q, in.prefix, in.suffix = closed(sub), sub.pre(), sub.suf()
		return in
	case syntax.OpConcat:
		return concat(re.Sub)
	case syntax.OpAlternate:
		in := info{}
		var qs []*query
		exact, prefix, suffix := []string{}, []string{}, []string{}
		for i, sub := range re.Sub {
			s := analyse(sub)
			qs = append(qs, closed(s))
			exact = unionUpTo(exact, s.exact)
			prefix = unionUpTo(prefix, s.pre())
			suffix = unionUpTo(suffix, s.suf())
			if i == 0 || s.digits < in.digits {
				in.digits = s.digits
			}
			if in.width >= 0 && s.width >= 0 {
				in.width = max(in.width, s.width)
			} else {
				in.width = -1
			}
		}
		if exact != nil {
			in.exact = exact
			return in
		}
		in.q, in.prefix, in.suffix = or(qs...), prefix, suffix
		return in
	}
	// Empty-width assertions and empty matches constrain nothing.
	return info{exact: []string{""}}
}

// concat joins neighbouring exact parts of a concatenation, and the parts next to them,
// into longer literals.
func concat(subs []*syntax.Regexp) info {
	in := info{}
	var qs []*query
	acc := []string{""}
	joined := true // every part so far was exact and joined into acc
	for _, sub := range subs {
		s := analyse(sub)
		in.digits += s.digits
		if in.width >= 0 && s.width >= 0 {
			in.width += s.width
		} else {
			in.width = -1
		}
		if s.exact != nil && len(acc)*len(s.exact) <= maxExact {
			acc = cross(acc, s.exact)
			continue
		}
		run := acc
		if p := s.pre(); p != nil && len(acc)*len(p) <= maxExact {
			run = cross(acc, p)
		}
		if joined && !emptySet(run) {
			in.prefix = run
		}
		qs = append(qs, litSet(run), closed(s))
		acc, joined = []string{""}, false
		if sf := s.suf(); sf != nil {
			acc = sf
		}
	}
	if joined {
		in.exact = acc
		return in
	}
	if !emptySet(acc) {
		in.suffix = acc
	}
	qs = append(qs, litSet(acc))
	in.q = and(qs...)
	return in
}

func emptySet(s []string) bool { return len(s) == 1 && s[0] == "" }

// unionUpTo merges two sets unless either is unknown or the result is too big.
func unionUpTo(a, b []string) []string {
	if a == nil || b == nil || len(a)+len(b) > maxExact {
		return nil
	}
	return union(a, b)
}

// closed turns what is known of a node into one necessary condition.
func closed(in info) *query {
	return withDigits(info{q: and(in.q, litSet(in.exact)), digits: in.digits, width: in.width})
}

// litSet is the condition that one of the strings occurs, or nil when one of them is too
// short to be worth looking for.
func litSet(strs []string) *query {
	if strs == nil {
		return nil
	}
	for _, s := range strs {
		if !selective(s) {
			return nil
		}
	}
	return &query{op: 'l', lits: slices.Clone(strs)}
}

func selective(s string) bool {
	return len(s) >= 2 || len(s) == 1 && strings.Contains("@#$%&*=<>|~^\\", s)
}

func cross(a, b []string) []string {
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return union(out, nil)
}

// union merges string sets, dropping duplicates.
func union(a, b []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range append(slices.Clone(a), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// asciiLower lower-cases a literal whose every character is ASCII or case-folds to ASCII
// (the Kelvin sign, the long s and the Turkish İ and ı, which Scan maps to k, s and i).
func asciiLower(rs []rune) (string, bool) {
	b := make([]byte, 0, len(rs))
	for _, r := range rs {
		c, ok := foldASCII(r)
		if !ok {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), true
}

func foldASCII(r rune) (byte, bool) {
	switch {
	case r == '\u212a':
		return 'k', true
	case r == '\u017f':
		return 's', true
	case r == '\u0130' || r == '\u0131':
		return 'i', true
	case r >= utf8.RuneSelf:
		return 0, false
	case r >= 'A' && r <= 'Z':
		return byte(r) + 'a' - 'A', true
	}
	return byte(r), true
}

// classChars lists a small class's characters, lower-cased, or nil for a big class.
func classChars(ranges []rune) []string {
	var out []string
	seen := map[byte]bool{}
	for i := 0; i+1 < len(ranges); i += 2 {
		if ranges[i+1]-ranges[i] > maxExact {
			return nil
		}
		for r := ranges[i]; r <= ranges[i+1]; r++ {
			c, ok := foldASCII(r)
			if !ok {
				return nil
			}
			if !seen[c] {
				seen[c] = true
				out = append(out, string(c))
			}
		}
	}
	if len(out) > 16 {
		return nil
	}
	return out
}

// withDigits adds the digit-density condition to a node's literal condition.
func withDigits(in info) *query {
	if in.digits < minDigits {
		return in.q
	}
	return and(in.q, &query{op: 'd', digits: in.digits, width: in.width})
}

// and combines necessary conditions. Of several digit conditions only the one asking
// for the most digits is kept: each costs a pass over the text.
func and(qs ...*query) *query {
	out := &query{op: 'a'}
	var dense *query
	add := func(q *query) {
		if q.op != 'd' {
			out.subs = append(out.subs, q)
		} else if dense == nil || q.digits > dense.digits || q.digits == dense.digits && q.width >= 0 && q.width < dense.width {
			dense = q
		}
	}
	for _, q := range qs {
		switch {
		case q == nil:
		case q.op == 'a':
			for _, s := range q.subs {
				add(s)
			}
		default:
			add(q)
		}
	}
	if dense != nil {
		out.subs = append(out.subs, dense)
	}
	switch len(out.subs) {
	case 0:
		return nil
	case 1:
		return out.subs[0]
	}
	return out
}

func or(qs ...*query) *query {
	out := &query{op: 'o'}
	lits := &query{op: 'l'}
	for _, q := range qs {
		switch {
		case q == nil:
			return nil // one branch can match anything, so the whole can
		case q.op == 'o':
			for _, s := range q.subs {
				if s.op == 'l' {
					lits.lits = append(lits.lits, s.lits...)
				} else {
					out.subs = append(out.subs, s)
				}
			}
		case q.op == 'l':
			lits.lits = append(lits.lits, q.lits...)
		default:
			out.subs = append(out.subs, q)
		}
	}
	if len(lits.lits) > 0 {
		out.subs = append(out.subs, lits)
	}
	if len(out.subs) == 1 {
		return out.subs[0]
	}
	return out
}

// simplify removes duplicate literals and drops literal sets too big to help.
func simplify(q *query) *query {
	if q == nil {
		return nil
	}
	switch q.op {
	case 'l':
		seen := map[string]bool{}
		var lits []string
		for _, l := range q.lits {
			if !seen[l] {
				seen[l] = true
				lits = append(lits, l)
			}
		}
		if len(lits) > maxLiterals {
			return nil
		}
		return &query{op: 'l', lits: lits}
	case 'a':
		subs := make([]*query, 0, len(q.subs))
		for _, s := range q.subs {
			subs = append(subs, simplify(s))
		}
		return and(subs...)
	case 'o':
		subs := make([]*query, 0, len(q.subs))
		for _, s := range q.subs {
			s = simplify(s)
			if s == nil {
				return nil
			}
			subs = append(subs, s)
		}
		return or(subs...)
	}
	return q
}

// literal returns the longest ASCII stretch of a literal that has other characters,
// lower-cased, if it is selective enough to look for. Non-ASCII letters have case variants
// the ASCII-only automaton would miss, so they are left out.
func literal(rs []rune) (string, bool) {
	var best, cur []rune
	for _, r := range rs {
		if r < utf8.RuneSelf {
			cur = append(cur, r)
			if len(cur) > len(best) {
				best = cur
			}
			continue
		}
		cur = nil
	}
	s := strings.ToLower(string(best))
	return s, selective(s)
}

// runeWidth is the most bytes r can occupy in a text it matches: a case-insensitive
// letter may match a longer case variant (the Kelvin sign matches k).
func runeWidth(r rune, fold bool) int {
	w := utf8.RuneLen(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			w = max(w, utf8.RuneLen(f))
		}
	}
	return max(w, 1)
}

// classWidth is the most bytes one character of a class (given as ranges) can occupy.
func classWidth(ranges []rune) int {
	w := 1
	for i := 1; i < len(ranges); i += 2 {
		w = max(w, utf8.RuneLen(min(ranges[i], unicode.MaxRune)))
	}
	return w
}

// onlyDigits reports whether a class holds decimal digits only (Python's \d: of any
// script).
func onlyDigits(ranges []rune) bool {
	for i := 0; i+1 < len(ranges); i += 2 {
		for r := ranges[i]; r <= ranges[i+1]; r++ {
			if !unicode.IsDigit(r) {
				return false
			}
		}
	}
	return len(ranges) > 0
}

// Set holds the patterns of one policy and an automaton over all their literals.
type Set struct {
	lits  []string
	ac    *automaton
	ascii *Run // runs of ASCII, for WriteString
}

// NewSet builds the automaton over the literals of the given patterns and ties each pattern
// to it. A pattern belongs to at most one Set.
func NewSet(patterns []*Pattern) *Set {
	s := &Set{}
	index := map[string]int{}
	var bind func(q *query)
	bind = func(q *query) {
		if q == nil {
			return
		}
		for _, sub := range q.subs {
			bind(sub)
		}
		if q.op != 'l' {
			return
		}
		q.words = nil
		for _, l := range q.lits {
			id, ok := index[l]
			if !ok {
				id = len(s.lits)
				index[l] = id
				s.lits = append(s.lits, l)
			}
			k := slices.IndexFunc(q.words, func(w wordMask) bool { return w.index == id/64 })
			if k < 0 {
				q.words = append(q.words, wordMask{index: id / 64})
				k = len(q.words) - 1
			}
			q.words[k].bits |= 1 << (id % 64)
		}
	}
	for _, p := range patterns {
		for _, b := range p.branches {
			bind(b.q)
		}
	}
	// With no literals the automaton has one state: scanning still counts digits.
	s.ac = newAutomaton(s.lits)
	s.ascii = s.Run(NewByteSet(func(byte) bool { return true }))
	return s
}

// Text is a string prepared for matching against a Set's patterns.
type Text struct {
	s string
	// write, when not nil, writes the text of src again: a text scanned by a Writer is
	// only kept once a pattern needs it (String).
	write  func(dst []byte, src any) []byte
	src    any
	n      int // length in bytes
	hits   []uint64
	small  [4]uint64 // backs hits for up to 256 literals
	digits int       // decimal digits in the whole text; -1 until counted
	// wide marks the bytes where a digit starts, for a text with non-ASCII digits (each
	// of several bytes); nil when every digit is an ASCII byte.
	wide       []bool
	windows    []window // digit counts computed so far, by span width
	results    []result // patterns matched against the text so far
	resultsBuf [4]result
}

type result struct {
	p       *Pattern
	matched bool
}

type window struct{ width, digits int }

// Scan finds which of the set's literals occur in text, in one pass.
func (s *Set) Scan(text string) *Text {
	var w Writer
	w.Start(s, nil)
	w.WriteString(text)
	t := w.t
	w.finish()
	t.s = text
	return t
}

// Writer scans a text written a piece at a time, for a text that would cost more to
// build first (a value's repr()): the literals are found as the pieces come, and the
// text is only built if a pattern needs it. A piece must not end inside a character's
// UTF-8 encoding. The zero Writer is ready for Start.
type Writer struct {
	set    *Set
	t      *Text
	state  uint32
	digits int
	wide   bool // a non-ASCII digit was written
}

// Start begins a text to be matched against s's patterns, in t, a zero Text, or in a new
// one when t is nil (a caller that scans many texts can allocate them together).
func (w *Writer) Start(s *Set, t *Text) {
	if t == nil {
		t = &Text{}
	}
	t.digits = -1
	t.results = t.resultsBuf[:0]
	if n := (len(s.lits) + 63) / 64; n <= len(t.small) {
		t.hits = t.small[:n]
	} else {
		t.hits = make([]uint64, n)
	}
	*w = Writer{set: s, t: t}
}

// Text ends the text begun by Start: String writes it again, when it is needed, as
// write(dst, src) does, which must append what was written.
func (w *Writer) Text(src any, write func(dst []byte, src any) []byte) *Text {
	t := w.t
	t.src, t.write = src, write
	w.finish()
	return t
}

func (w *Writer) finish() {
	if !w.wide {
		w.t.digits = w.digits
	}
	*w = Writer{}
}

// ByteSet is a set of ASCII bytes.
type ByteSet struct{ in [256]bool }

// NewByteSet returns the set of the ASCII bytes for which in is true.
func NewByteSet(in func(b byte) bool) *ByteSet {
	s := &ByteSet{}
	for b := range utf8.RuneSelf {
		s.in[b] = in(byte(b))
	}
	return s
}

// Has reports whether b is in the set.
func (s *ByteSet) Has(b byte) bool { return s.in[b] }

// Alike reports whether scanning reads the bytes a and b alike: a text with one in place
// of the other finds the same literals.
func (s *Set) Alike(a, b byte) bool { return s.ac.class[a] == s.ac.class[b] }

// Run is a set of ASCII bytes ready for WriteRun with Writers of one Set.
type Run struct {
	set   *Set
	table *[256]uint32
}

// Run prepares in for writing runs of its bytes with WriteRun.
func (s *Set) Run(in *ByteSet) *Run {
	return &Run{set: s, table: s.ac.bytes(in.Has)}
}

// WriteRun writes the longest prefix of p whose bytes are all in r, and returns its
// length: a piece of text written as it is, up to a byte that needs more care.
func (w *Writer) WriteRun(p string, r *Run) int {
	if r.set != w.set {
		panic("match: a Run of another Set")
	}
	n, digits := run(w.set.ac, &w.state, p, r.table, w.t.hits)
	w.t.n += n
	w.digits += digits
	return n
}

// WriteString writes p.
func (w *Writer) WriteString(p string) (int, error) {
	for i := 0; i < len(p); {
		i += w.WriteRun(p[i:], w.set.ascii)
		if i == len(p) {
			break
		}
		r, size := utf8.DecodeRuneInString(p[i:])
		if size == 1 { // not UTF-8: a byte of its own
			w.WriteByte(p[i])
		} else {
			w.WriteRune(r)
		}
		i += size
	}
	return len(p), nil
}

// Write writes p.
func (w *Writer) Write(p []byte) (int, error) { return w.WriteString(string(p)) }

// WriteByte writes one byte: an ASCII character, or a byte that is not UTF-8.
func (w *Writer) WriteByte(b byte) error {
	w.state = w.set.ac.step(w.state, b, w.t.hits)
	if b >= '0' && b <= '9' {
		w.digits++
	}
	w.t.n++
	return nil
}

// WriteRune writes r in UTF-8.
func (w *Writer) WriteRune(r rune) (int, error) {
	if r < utf8.RuneSelf {
		return 1, w.WriteByte(byte(r))
	}
	if unicode.IsDigit(r) {
		w.wide = true // counted, and placed, on the text when a pattern asks
	}
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], r)
	// The Kelvin sign, the long s and the Turkish İ and ı are the only non-ASCII
	// characters that Python's case folding equates with ASCII letters; the automaton
	// reads them as those letters, so that it sees every text the pattern would match.
	if c, ok := foldASCII(r); ok {
		w.state = w.set.ac.step(w.state, c, w.t.hits)
	} else {
		for _, b := range buf[:n] {
			w.state = w.set.ac.step(w.state, b, w.t.hits)
		}
	}
	w.t.n += n
	return n, nil
}

// String returns the text.
func (t *Text) String() string {
	if t.write != nil {
		t.s = string(t.write(make([]byte, 0, t.n), t.src))
		t.write, t.src = nil, nil
	}
	return t.s
}

// Len returns the length of the text in bytes.
func (t *Text) Len() int { return t.n }

type wordMask struct {
	index int
	bits  uint64
}

func (t *Text) anyHit(words []wordMask) bool {
	if t.hits == nil {
		return false
	}
	for _, w := range words {
		if t.hits[w.index]&w.bits != 0 {
			return true
		}
	}
	return false
}

// hasDigits reports whether some span of width bytes (all of the text when width < 0)
// holds at least n decimal digits. Most texts have few digits in all, which one count over
// the text, shared by every width, settles.
func (t *Text) hasDigits(n, width int) bool {
	if t.digits < 0 {
		t.countDigits()
	}
	if t.digits < n {
		return false
	}
	if width < 0 || width >= t.n {
		return true
	}
	return t.digitsWithin(width) >= n
}

func (t *Text) countDigits() {
	t.digits = 0
	s := t.String()
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			if isDigit(s[i]) {
				t.digits++
			}
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if unicode.IsDigit(r) {
			if t.wide == nil {
				t.wide = make([]bool, len(s))
				for j := 0; j < i; j++ {
					t.wide[j] = isDigit(s[j])
				}
			}
			t.wide[i] = true
			t.digits++
		}
		i += w - 1
	}
	if t.wide != nil { // mark the ASCII digits after the first wide one too
		for i := 0; i < len(s); i++ {
			if isDigit(s[i]) {
				t.wide[i] = true
			}
		}
	}
}

// digitsWithin returns the most digits starting in any span of width bytes.
func (t *Text) digitsWithin(width int) int {
	for _, w := range t.windows {
		if w.width == width {
			return w.digits
		}
	}
	s := t.String()
	at := func(i int) bool { return isDigit(s[i]) }
	if t.wide != nil {
		at = func(i int) bool { return t.wide[i] }
	}
	best, cur := 0, 0
	for i := 0; i < len(s); i++ {
		if at(i) {
			cur++
		}
		if width >= 0 && i >= width && at(i-width) {
			cur--
		}
		best = max(best, cur)
	}
	t.windows = append(t.windows, window{width, best})
	return best
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
