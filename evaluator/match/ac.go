package match

// automaton is an Aho-Corasick automaton, compiled to a DFA over byte classes, that finds
// which of a set of ASCII literals occur in a text, ignoring ASCII case, overlapping
// occurrences included. Scanning allocates nothing and reads each byte once.
//
// The Aho-Corasick libraries at hand either allocate per occurrence, are not safe for
// concurrent use, or only report leftmost matches, which can hide a literal that
// overlaps another; this one is small and does exactly what the prefilter needs.
type automaton struct {
	class  [256]uint8 // byte to class; upper-case letters share their lower case's class
	nclass int
	// next[s+class] is the state after state s reads a byte of that class. A state is
	// its row's offset in the table (its number times nclass), so that a step is one add
	// and one load. States are numbered so that those where literals end come last:
	// reaching a state at or above firstOut finds literals. 16-bit states keep the table
	// small enough to stay in cache; automata with bigger tables use the 32-bit one.
	next16   []uint16
	next32   []uint32
	firstOut uint32
	outOff   []int32 // literals found on reaching state n*nclass: outIDs[outOff[n]:outOff[n+1]]
	outIDs   []int32
}

// newAutomaton compiles lower-case ASCII literals.
func newAutomaton(lits []string) *automaton {
	a := &automaton{nclass: 1} // class 0: bytes in no literal
	for _, l := range lits {
		for i := 0; i < len(l); i++ {
			b := l[i]
			if a.class[b] == 0 {
				a.class[b] = uint8(a.nclass)
				if b >= 'a' && b <= 'z' {
					a.class[b-'a'+'A'] = uint8(a.nclass)
				}
				a.nclass++
			}
		}
	}
	// The trie, with state 0 as the root.
	next := [][]int32{make([]int32, a.nclass)}
	own := [][]int32{nil}
	for id, l := range lits {
		s := int32(0)
		for i := 0; i < len(l); i++ {
			c := a.class[l[i]]
			if next[s][c] == 0 {
				next = append(next, make([]int32, a.nclass))
				own = append(own, nil)
				next[s][c] = int32(len(next) - 1)
			}
			s = next[s][c]
		}
		own[s] = append(own[s], int32(id))
	}
	// Breadth-first: fail links, completed transitions and inherited outputs.
	n := len(next)
	trans := make([]int32, n*a.nclass)
	fail := make([]int32, n)
	outs := make([][]int32, n)
	queue := make([]int32, 0, n)
	for c := range a.nclass {
		if t := next[0][c]; t != 0 {
			trans[c] = t
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		outs[s] = append(append([]int32(nil), own[s]...), outs[fail[s]]...)
		for c := range a.nclass {
			t := next[s][c]
			if t == 0 {
				trans[int(s)*a.nclass+c] = trans[int(fail[s])*a.nclass+c]
				continue
			}
			fail[t] = trans[int(fail[s])*a.nclass+c]
			trans[int(s)*a.nclass+c] = t
			queue = append(queue, t)
		}
	}
	// Renumber: states without outputs first, then those with.
	order := make([]int32, 0, n)
	for _, withOut := range []bool{false, true} {
		for st := range n {
			if (len(outs[st]) > 0) == withOut {
				order = append(order, int32(st))
			}
		}
	}
	number := make([]uint32, n)
	for i, st := range order {
		number[st] = uint32(i)
	}
	a.firstOut = uint32(n)
	for i, st := range order {
		if len(outs[st]) > 0 {
			a.firstOut = uint32(i)
			break
		}
	}
	// Keep the start state at 0: it never has outputs, so it is first already.
	a.outOff = make([]int32, n+1)
	for i, st := range order {
		a.outOff[i+1] = a.outOff[i] + int32(len(outs[st]))
		a.outIDs = append(a.outIDs, outs[st]...)
	}
	a.firstOut *= uint32(a.nclass)
	small := n*a.nclass <= 1<<16
	if small {
		a.next16 = make([]uint16, n*a.nclass)
	} else {
		a.next32 = make([]uint32, n*a.nclass)
	}
	for i, st := range order {
		for c := range a.nclass {
			to := number[trans[int(st)*a.nclass+c]] * uint32(a.nclass)
			if small {
				a.next16[i*a.nclass+c] = uint16(to)
			} else {
				a.next32[i*a.nclass+c] = to
			}
		}
	}
	return a
}

// scan sets the bit of every literal that occurs in text.
func (a *automaton) scan(text string, hits []uint64) {
	var st uint32
	run(a, &st, text, a.bytes(func(byte) bool { return true }), hits)
}

// A byte's entry in a table of bytes: its class, whether it is an ASCII digit, and
// whether it ends a run (see run).
const (
	classBits = 0xff
	digitBit  = 1 << 8
	stopBit   = 1 << 15
)

// bytes returns the table of bytes for runs of the bytes for which in is true.
func (a *automaton) bytes(in func(b byte) bool) *[256]uint32 {
	t := &[256]uint32{}
	for b := range t {
		t[b] = uint32(a.class[b])
		if b >= '0' && b <= '9' {
			t[b] |= digitBit
		}
		if !in(byte(b)) {
			t[b] |= stopBit
		}
	}
	return t
}

// run reads text from state *st up to its first byte that ends a run in table, setting
// the bits of the literals found, and returns how many bytes it read and how many of
// them were ASCII digits. One table gives each byte's class, digit and end: the loop
// waits on each state's load, so the rest of its work must stay small.
func run(a *automaton, st *uint32, text string, table *[256]uint32, hits []uint64) (n, digits int) {
	if a.next16 != nil {
		return runTable(a, a.next16, st, text, table, hits)
	}
	return runTable(a, a.next32, st, text, table, hits)
}

func runTable[T uint16 | uint32](a *automaton, next []T, st *uint32, text string, table *[256]uint32, hits []uint64) (n, digits int) {
	firstOut, s := a.firstOut, *st
	i := 0
	for ; i < len(text); i++ {
		c := table[text[i]]
		if c >= stopBit {
			break
		}
		digits += int(c >> 8)
		s = uint32(next[s+c&classBits])
		if s >= firstOut {
			a.found(s, hits)
		}
	}
	*st = s
	return i, digits
}

// step reads one byte from state st.
func (a *automaton) step(st uint32, b byte, hits []uint64) uint32 {
	if a.next16 != nil {
		st = uint32(a.next16[st+uint32(a.class[b])])
	} else {
		st = a.next32[st+uint32(a.class[b])]
	}
	if st >= a.firstOut {
		a.found(st, hits)
	}
	return st
}

// found sets the bits of the literals that end at state st. Not inlined: in the scanning
// loop its registers would push the loop's own to the stack.
//
//go:noinline
func (a *automaton) found(st uint32, hits []uint64) {
	n := st / uint32(a.nclass)
	for _, id := range a.outIDs[a.outOff[n]:a.outOff[n+1]] {
		hits[id/64] |= 1 << (id % 64)
	}
}
