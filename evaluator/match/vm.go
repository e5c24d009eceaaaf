package match

import (
	"fmt"
	"regexp/syntax"
	"sync"
	"unicode"
	"unicode/utf8"
)

// vm searches for a pattern by simulating its automaton over the text (Thompson's
// construction, one pass, no backtracking): linear time, as Go's regexp, with Python's
// assertions. It only answers whether there is a match, which needs no captures.
type vm struct {
	prog  []inst
	start int
	// anchored is set when every match starts at the start of the text, so the search
	// can stop as soon as no state is left.
	anchored bool
	pool     sync.Pool // of *threads, reused across searches
}

type instOp uint8

const (
	opRunes    instOp = iota // one character in ranges
	opAny                    // any character
	opAnyNotNL               // any character but \n
	opSplit                  // both out and alt
	opEmpty                  // an assertion, then out
	opMatch
	opFail
)

// assertion is a zero-width test at a position.
type assertion uint8

const (
	aBeginText assertion = iota // ^, \A
	aBeginLine                  // (?m)^
	aEndText                    // \Z (Python), \z
	aEndLine                    // (?m)$
	aDollar                     // $: the end, or before a final \n
	aWord                       // \b
	aNotWord                    // \B
)

type inst struct {
	op     instOp
	assert assertion
	out    int
	alt    int
	ranges []rune // sorted pairs, for opRunes
}

// maxProg bounds the instructions of one pattern (repetitions are unrolled).
const maxProg = 100_000

func compileVM(re *syntax.Regexp) (*vm, error) {
	c := &vmCompiler{}
	match := c.add(inst{op: opMatch})
	start, err := c.gen(re, match)
	if err != nil {
		return nil, err
	}
	m := &vm{prog: c.prog, start: start, anchored: anchoredStart(re)}
	m.pool.New = func() any { return newThreads(len(m.prog)) }
	return m, nil
}

type vmCompiler struct {
	prog []inst
}

func (c *vmCompiler) add(i inst) int {
	c.prog = append(c.prog, i)
	return len(c.prog) - 1
}

// gen compiles re to run before the instruction next, and returns its entry.
func (c *vmCompiler) gen(re *syntax.Regexp, next int) (int, error) {
	if len(c.prog) > maxProg {
		return 0, fmt.Errorf("expression too large")
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return c.add(inst{op: opFail}), nil
	case syntax.OpEmptyMatch:
		return next, nil
	case syntax.OpLiteral:
		for i := len(re.Rune) - 1; i >= 0; i-- {
			next = c.add(inst{op: opRunes, out: next, ranges: literalRanges(re.Rune[i], re.Flags&syntax.FoldCase != 0)})
		}
		return next, nil
	case syntax.OpCharClass:
		return c.add(inst{op: opRunes, out: next, ranges: re.Rune}), nil
	case syntax.OpAnyCharNotNL:
		return c.add(inst{op: opAnyNotNL, out: next}), nil
	case syntax.OpAnyChar:
		return c.add(inst{op: opAny, out: next}), nil
	case syntax.OpBeginLine:
		return c.add(inst{op: opEmpty, assert: aBeginLine, out: next}), nil
	case syntax.OpEndLine:
		return c.add(inst{op: opEmpty, assert: aEndLine, out: next}), nil
	case syntax.OpBeginText:
		return c.add(inst{op: opEmpty, assert: aBeginText, out: next}), nil
	case syntax.OpEndText:
		a := aEndText
		if re.Flags&syntax.WasDollar != 0 {
			a = aDollar
		}
		return c.add(inst{op: opEmpty, assert: a, out: next}), nil
	case syntax.OpWordBoundary:
		return c.add(inst{op: opEmpty, assert: aWord, out: next}), nil
	case syntax.OpNoWordBoundary:
		return c.add(inst{op: opEmpty, assert: aNotWord, out: next}), nil
	case syntax.OpCapture:
		return c.gen(re.Sub[0], next)
	case syntax.OpConcat:
		for i := len(re.Sub) - 1; i >= 0; i-- {
			var err error
			if next, err = c.gen(re.Sub[i], next); err != nil {
				return 0, err
			}
		}
		return next, nil
	case syntax.OpAlternate:
		entry := -1
		for i := len(re.Sub) - 1; i >= 0; i-- {
			e, err := c.gen(re.Sub[i], next)
			if err != nil {
				return 0, err
			}
			if entry < 0 {
				entry = e
				continue
			}
			entry = c.add(inst{op: opSplit, out: e, alt: entry})
		}
		return entry, nil
	case syntax.OpQuest:
		body, err := c.gen(re.Sub[0], next)
		if err != nil {
			return 0, err
		}
		return c.add(inst{op: opSplit, out: body, alt: next}), nil
	case syntax.OpStar, syntax.OpPlus:
		loop := c.add(inst{op: opSplit, alt: next})
		body, err := c.gen(re.Sub[0], loop)
		if err != nil {
			return 0, err
		}
		c.prog[loop].out = body
		if re.Op == syntax.OpPlus {
			return body, nil
		}
		return loop, nil
	case syntax.OpRepeat:
		// Simplify unrolls repetitions; one left here is a bug.
		return 0, fmt.Errorf("unexpanded repetition %s", re)
	}
	return 0, fmt.Errorf("unsupported expression %s", re)
}

// anchoredStart reports whether every match of re starts with ^ (or \A).
func anchoredStart(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return anchoredStart(re.Sub[0])
	case syntax.OpConcat:
		return len(re.Sub) > 0 && anchoredStart(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !anchoredStart(sub) {
				return false
			}
		}
		return len(re.Sub) > 0
	}
	return false
}

// literalRanges is the class a literal character matches: its case variants when folded.
func literalRanges(r rune, fold bool) []rune {
	out := []rune{r, r}
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			out = append(out, f, f)
		}
	}
	return normalizeRanges(out)
}

func runeIn(ranges []rune, r rune) bool {
	if len(ranges) <= 16 {
		for i := 0; i+1 < len(ranges); i += 2 {
			if r < ranges[i] {
				return false
			}
			if r <= ranges[i+1] {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(ranges)/2
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case r < ranges[2*m]:
			hi = m
		case r > ranges[2*m+1]:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// threads is a sparse set of instructions: the states the automaton is in.
type threads struct {
	dense  []int
	sparse []int
	stack  []int
}

func newThreads(n int) *[2]threads {
	var t [2]threads
	for i := range t {
		t[i] = threads{dense: make([]int, 0, n), sparse: make([]int, n)}
	}
	return &t
}

func (t *threads) has(pc int) bool {
	i := t.sparse[pc]
	return i < len(t.dense) && t.dense[i] == pc
}

func (t *threads) insert(pc int) {
	t.sparse[pc] = len(t.dense)
	t.dense = append(t.dense, pc)
}

// position is what the assertions see at a point of the text.
type position struct {
	at        int
	prev, cur rune // -1 at the start and the end of the text
	text      string
}

func (p *position) holds(a assertion) bool {
	switch a {
	case aBeginText:
		return p.at == 0
	case aBeginLine:
		return p.at == 0 || p.prev == '\n'
	case aEndText:
		return p.at == len(p.text)
	case aEndLine:
		return p.at == len(p.text) || p.cur == '\n'
	case aDollar:
		return p.at == len(p.text) || p.at == len(p.text)-1 && p.cur == '\n'
	case aWord, aNotWord:
		before := p.prev >= 0 && isWord(p.prev)
		after := p.cur >= 0 && isWord(p.cur)
		return (before != after) == (a == aWord)
	}
	return false
}

// add puts pc and every state reachable from it without reading a character into t; it
// reports whether the match state is among them.
func (m *vm) add(t *threads, pc int, pos *position) bool {
	t.stack = append(t.stack[:0], pc)
	for len(t.stack) > 0 {
		pc := t.stack[len(t.stack)-1]
		t.stack = t.stack[:len(t.stack)-1]
		if t.has(pc) {
			continue
		}
		t.insert(pc)
		in := &m.prog[pc]
		switch in.op {
		case opMatch:
			return true
		case opSplit:
			t.stack = append(t.stack, in.alt, in.out)
		case opEmpty:
			if pos.holds(in.assert) {
				t.stack = append(t.stack, in.out)
			}
		}
	}
	return false
}

// MatchString reports whether the pattern matches anywhere in s.
func (m *vm) MatchString(s string) bool {
	ts := m.pool.Get().(*[2]threads)
	defer m.pool.Put(ts)
	cur, next := &ts[0], &ts[1]
	cur.dense, next.dense = cur.dense[:0], next.dense[:0]
	pos := position{prev: -1, text: s}
	for at := 0; ; {
		pos.at = at
		r, w := rune(-1), 0
		if at < len(s) {
			r, w = utf8.DecodeRuneInString(s[at:])
		}
		pos.cur = r
		// A match may start anywhere: the start state joins at every position.
		if (at == 0 || !m.anchored) && m.add(cur, m.start, &pos) {
			return true
		}
		if at >= len(s) || m.anchored && len(cur.dense) == 0 {
			return false
		}
		npos := position{at: at + w, prev: r, cur: -1, text: s}
		if at+w < len(s) {
			npos.cur, _ = utf8.DecodeRuneInString(s[at+w:])
		}
		for _, pc := range cur.dense {
			in := &m.prog[pc]
			var ok bool
			switch in.op {
			case opRunes:
				ok = runeIn(in.ranges, r)
			case opAny:
				ok = true
			case opAnyNotNL:
				ok = r != '\n'
			}
			if ok && m.add(next, in.out, &npos) {
				return true
			}
		}
		cur, next = next, cur
		next.dense = next.dense[:0]
		pos.prev = r
		at += w
	}
}
