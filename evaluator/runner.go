package evaluator

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/expr-lang/expr/vm"

	"github.com/troy-audit/troy/evaluator/inject"
	"github.com/troy-audit/troy/evaluator/match"
	"github.com/troy-audit/troy/schemas"
)

// Bounds of a session's caches: texts prepared for matching (by number and by size) and
// patterns computed at run time.
const (
	maxCachedTexts     = 4096
	maxCachedTextBytes = 64 << 20
	maxDynamicPatterns = 256
	// vmKeepBytes: a machine whose run charged more than this is replaced, so that the
	// stack and loop state a big run left behind are let go.
	vmKeepBytes = 1 << 20
	// textSlab texts at most are allocated at a time.
	textSlab = 32
	// maxKeptRepr: a buffer grown past this by a big value is let go after it.
	maxKeptRepr = 1 << 20
)

// errFallback asks for a rule to be re-run without memoized quantifiers, because a
// predicate failed on a step in the quantifier's range and only the original program knows
// whether that failure is reached.
var errFallback = errors.New("memoized predicate failed")

// runner evaluates rules for one evaluation: one trace, or one session. It is not safe
// for concurrent use.
type runner struct {
	c     *Compiled
	env   env
	vm    vm.VM // runs rule programs
	pvm   vm.VM // runs predicates, called from inside rule programs
	preds []predState
	texts map[textKey]textEntry
	// scores keeps injection_score of the texts above, so that the rules and predicates
	// reading one tool output score it once; cleared with them.
	scores map[*match.Text]float64
	// recent holds the last texts looked up, checked before the map: the rules of one step
	// look at the same few values.
	recent    [8]recentText
	next      int
	textBytes int // of the texts cached
	dyn       map[string]*match.Pattern
	errs      []schemas.RuleError // indexed like c.rules
	bud       budget              // of the rule or predicate running
	repr      []byte              // room for the numbers of texts written for matching
	scan      match.Writer        // scans a text as it is written
	slab      []match.Text        // room for the next texts, allocated together
	slabN     int                 // texts in the last allocation
	slots     []any               // values of let names (see builder.letFast)
	trace     *TraceInfo
	agent     *AgentInfo
	provIdx   *provIndex // where values appeared, once a condition asks
	meta      metaRead   // metadata keys prechecks read at a step
}

// predState holds prefix counts of one predicate over the steps evaluated so far:
// hits[j] is how many of steps[0:j] satisfy it; fails, when not nil, counts failures.
type predState struct {
	hits  []int32
	fails []int32
}

type textKey struct {
	ptr  unsafe.Pointer
	n    int
	kind reflect.Kind
}

type recentText struct {
	key  textKey
	text *match.Text
}

// textEntry keeps the original value alive, so its address cannot be reused by another
// value while the entry is cached.
type textEntry struct {
	orig any
	text *match.Text
}

func (c *Compiled) newRunner(trace *TraceInfo, agent *AgentInfo) *runner {
	s := &runner{
		c:     c,
		preds: make([]predState, len(c.preds)),
		texts: map[textKey]textEntry{}, scores: map[*match.Text]float64{},
		errs:  make([]schemas.RuleError, len(c.rules)),
		slots: make([]any, c.slots),
		meta:  metaRead{vals: make([]metaVal, c.metaRead)},
		bud:   newBudget(c.limits),
		trace: trace,
		agent: agent,
	}
	s.vm.MemoryBudget = memoryBudget
	s.pvm.MemoryBudget = memoryBudget
	s.env.vars = envTypes()
	s.env.vars[budgetName] = &s.bud
	s.env.One = make([]*stepView, 1)
	s.env.vars["trace"] = trace
	s.env.vars["agent"] = agent
	s.env.vars[oneName] = s.env.One
	s.env.vars[matchesName] = s.matches
	s.env.vars[scoreName] = s.injectionScore
	s.env.vars[injectedName] = s.injected
	s.env.vars[countName] = s.count
	s.env.vars[fieldName] = field
	s.env.vars[tickName] = s.tick
	s.env.vars[addName] = s.add
	s.env.vars[categoryName] = s.category
	s.env.vars[untrustedName] = s.untrusted
	s.env.vars[fromUserName] = s.fromUser
	s.env.vars[originName] = s.origin
	s.env.vars[contextName] = s.contextScore
	return s
}

// evalStep evaluates every rule at the current step (position at), in rule order,
// appending violations, and the cases of judge rules whose condition holds.
func (s *runner) evalStep(out []schemas.Violation, cases []JudgeCase, at int) ([]schemas.Violation, []JudgeCase) {
	for _, r := range s.c.rulesFor(s.env.Step) {
		ok, err := s.outcome(r)
		if err != nil {
			s.fail(r.index, err)
			continue
		}
		if ok {
			if r.Judge != nil {
				cases = append(cases, judgeCase(r, at))
				continue
			}
			out = append(out, violation(r, s.env.Step.step))
		}
	}
	return out, cases
}

// outcome evaluates one rule at the current step: in Go when it can, else by its program.
func (s *runner) outcome(r *rule) (bool, error) {
	if r.fast != nil {
		if !r.bails {
			return r.fast(s, s.env.Step), nil
		}
		// A quarantined rule fails without running, as its program would.
		if s.c.quarantined[r.index].Load() == nil {
			if ok, decided := s.tryFast(r); decided {
				return ok, nil
			}
		}
		return s.evalRule(r)
	}
	if r.pre != nil {
		if !r.pre.pass(s, s.env.Step) {
			return false, nil
		}
		if r.pre.whole {
			return true, nil
		}
	}
	return s.evalRule(r)
}

// tryFast runs a rule compiled to Go that may leave the step to its program.
func (s *runner) tryFast(r *rule) (ok, decided bool) {
	defer func() {
		if e := recover(); e != nil {
			if e != errBail {
				panic(e)
			}
			ok, decided = false, false
		}
	}()
	return r.fast(s, s.env.Step), true
}

// evalRule runs a rule's program under the limits. A rule that breaks one is quarantined:
// it fails here, and at later steps without running.
func (s *runner) evalRule(r *rule) (bool, error) {
	if q := s.c.quarantined[r.index].Load(); q != nil {
		return false, errors.New(q.String())
	}
	s.env.sync()
	s.bud.reset()
	s.bud.active = true
	out, err := s.vm.Run(r.program, s.env.vars)
	if err != nil && r.fallback != nil && errors.Is(err, errFallback) {
		s.bud.reset()
		out, err = s.vm.Run(r.fallback, s.env.vars)
	}
	s.bud.active = false
	if s.bud.used > vmKeepBytes {
		s.vm = vm.VM{MemoryBudget: memoryBudget}
	}
	if err != nil {
		if limit := limitOf(err); limit != "" {
			s.c.quarantine(r.index, Quarantine{Limit: limit, Reason: reason(err), TraceID: s.trace.TraceID, StepID: s.env.Step.step.StepID})
		}
		return false, err
	}
	switch v := out.(type) {
	case bool:
		return v, nil
	case nil:
		return false, errors.New("condition produced null, not true or false")
	}
	return false, fmt.Errorf("condition produced %T, not true or false", out)
}

func (s *runner) fail(i int, err error) {
	e := &s.errs[i]
	if e.Count == 0 {
		e.RuleID = s.c.rules[i].RuleID
		e.FirstStep = s.env.Step.step.StepID
		e.FirstError = oneLine(conditionError(err).Error())
	}
	e.Count++
}

// ruleErrors returns the rules that failed, in rule order.
func (s *runner) ruleErrors() []schemas.RuleError {
	var out []schemas.RuleError
	for _, e := range s.errs {
		if e.Count > 0 {
			out = append(out, e)
		}
	}
	return out
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	// An error can quote a value of the step: bounded, so a rule error stays a line.
	const max = 512
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// count answers a memoized quantifier for the current step.
func (s *runner) count(key int) int {
	p, scope, negate := splitQuantKey(key)
	if p < 0 || p >= len(s.preds) {
		panic(fmt.Sprintf("%s: no predicate %d", countName, p))
	}
	lo, hi := 0, len(s.env.Steps)
	switch scope {
	case scopePrev:
		hi = s.env.StepIndex
	case scopeNext:
		lo = s.env.StepIndex + 1
	}
	if lo >= hi {
		return 0
	}
	st := s.extend(p, hi)
	if st.fails != nil && st.fails[hi]-st.fails[lo] > 0 {
		panic(errFallback)
	}
	n := int(st.hits[hi] - st.hits[lo])
	if negate {
		n = hi - lo - n
	}
	return n
}

// extend evaluates predicate p on steps not yet seen, up to steps[:hi]. Each evaluation
// of the predicate has limits of its own, as if it ran at its step; when one breaks a
// limit, the rule asking fails with that error.
func (s *runner) extend(p, hi int) *predState {
	st := &s.preds[p]
	if st.hits == nil {
		st.hits = make([]int32, 1, len(s.env.Steps)+1)
	}
	if len(st.hits) > hi {
		return st
	}
	pred := s.c.preds[p]
	saved, at := s.bud.pause()
	for j := len(st.hits) - 1; j < hi; j++ {
		var hit, bad int32
		switch {
		case pred.fast != nil:
			if pred.fast(s, s.env.Steps[j]) {
				hit = 1
			}
		case pred.pre != nil && !pred.pre.pass(s, s.env.Steps[j]):
		case pred.whole:
			hit = 1
		default:
			s.env.One[0] = s.env.Steps[j]
			s.env.sync()
			s.bud.reset()
			s.bud.active = true
			out, err := s.pvm.Run(pred.program, s.env.vars)
			if s.bud.used > vmKeepBytes {
				s.pvm = vm.VM{MemoryBudget: memoryBudget}
			}
			switch le := asLimit(err); {
			case le != nil:
				s.env.One[0] = nil
				s.bud.resume(saved, at)
				panic(le)
			case err != nil:
				bad = 1
			case out == true:
				hit = 1
			}
		}
		st.hits = append(st.hits, st.hits[j]+hit)
		if bad == 1 && st.fails == nil {
			st.fails = make([]int32, j+1, cap(st.hits))
		}
		if st.fails != nil {
			st.fails = append(st.fails, st.fails[j]+bad)
		}
	}
	s.env.One[0] = nil
	s.bud.resume(saved, at)
	return st
}

// forget drops what is known about steps from index j on, after one of them changed.
func (s *runner) forget(j int) {
	for i := range s.preds {
		st := &s.preds[i]
		if len(st.hits) > j+1 {
			st.hits = st.hits[:j+1]
		}
		if len(st.fails) > j+1 {
			st.fails = st.fails[:j+1]
		}
	}
}

// matches is matches(text, pattern): a case-insensitive regular expression search.
func (s *runner) matches(text, pattern any) bool {
	ps, ok := pattern.(string)
	if !ok {
		panic(fmt.Sprintf("matches: pattern must be a string, got %T", pattern))
	}
	t := s.text(text, true)
	if t == nil {
		return false
	}
	p := s.c.patterns[ps]
	if p == nil || s.c.plain {
		// A pattern computed at run time is not in the policy's prefilter set.
		if p == nil {
			p = s.dynamic(ps)
		}
		return p.MatchString(t.String())
	}
	return p.Match(t)
}

// injectionScore is injection_score(text): how much text reads as instructions to the
// model (see package inject). A map or list is scored text by text (each string in it and
// each key: a message, a review, a field) and gets the highest score, so that ordinary
// requests in separate messages do not add up to an injection. Other values are read as
// matches() reads them. The detector's work, linear in the text up to inject.MaxBytes a
// text, is charged to the budget.
func (s *runner) injectionScore(text any) float64 {
	if str, ok := text.(string); ok {
		return s.scoreText(str)
	}
	t := s.text(text, true)
	if t == nil {
		return 0
	}
	if v, ok := s.scores[t]; ok {
		return v // scored already: no work to charge
	}
	var v float64
	switch text.(type) {
	case map[string]any, []any, []string:
		walkStrings(text, func(str string) { v = max(v, s.scoreText(str)) })
	default:
		v = s.scoreText(t.String())
	}
	s.scores[t] = v
	return v
}

// walkStrings calls fn with each string of x and each key of its maps, in no set order.
func walkStrings(x any, fn func(string)) {
	switch v := x.(type) {
	case string:
		fn(v)
	case map[string]any:
		for k, e := range v {
			fn(k)
			walkStrings(e, fn)
		}
	case []any:
		for _, e := range v {
			walkStrings(e, fn)
		}
	case []string:
		for _, e := range v {
			fn(e)
		}
	}
}

// scoreText scores str for injection, charging the work to the budget.
func (s *runner) scoreText(str string) float64 {
	if s.bud.active {
		n := int64(min(len(str), inject.MaxBytes))
		if err := s.bud.charge(n, func() string { return "scoring a text of " + size(n) + " for injection" }); err != nil {
			panic(err)
		}
	}
	return inject.Score(str)
}

// injected is injected(text): injection_score(text) >= inject.Threshold.
func (s *runner) injected(text any) bool { return s.injectionScore(text) >= inject.Threshold }

// dynamic compiles a pattern computed at run time, once per session (the cache is
// bounded). Its size counts against the budget.
func (s *runner) dynamic(ps string) *match.Pattern {
	if p, ok := s.dyn[ps]; ok {
		return p
	}
	if len(ps) > maxDynamicPattern {
		panic(&LimitError{Limit: LimitMemory, Msg: fmt.Sprintf("a pattern of %s computed at run time exceeds the %s limit", size(int64(len(ps))), size(maxDynamicPattern))})
	}
	if err := s.bud.charge(patternBytes(ps), func() string { return "compiling a pattern" }); err != nil {
		panic(err)
	}
	p, err := match.Compile(ps)
	if err != nil {
		panic(err)
	}
	if s.dyn == nil || len(s.dyn) >= maxDynamicPatterns {
		s.dyn = map[string]*match.Pattern{}
	}
	s.dyn[ps] = p
	return p
}

// text prepares a value for matching as the Python tool's matches() sees it: Python's
// str() of the value, so strings as they are and everything else as repr() (None, True,
// 1.0, {'k': 'v'}). Strings, objects and lists are cached by identity, since several rules
// usually match against the same step field. With charge, an object written out for the
// first time counts against the running program's budget (conditions compiled to Go only
// match step fields, which the event size bounds).
func (s *runner) text(v any, charge bool) *match.Text {
	var key textKey
	switch x := v.(type) {
	case string:
		key = textKey{ptr: unsafe.Pointer(unsafe.StringData(x)), n: len(x), kind: reflect.String}
	case nil, bool, int, float64:
		return s.c.set.Scan(pyStr(x))
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Map, reflect.Pointer, reflect.Slice:
			key = textKey{ptr: rv.UnsafePointer(), n: lenOf(rv), kind: rv.Kind()}
		default:
			return s.c.set.Scan(pyStr(v))
		}
	}
	for i := range s.recent {
		if s.recent[i].key == key && s.recent[i].text != nil {
			return s.recent[i].text
		}
	}
	if e, ok := s.texts[key]; ok {
		s.remember(key, e.text)
		return e.text
	}
	str, ok := v.(string)
	if !ok {
		if charge && s.bud.active {
			n := textSize(v, s.bud.remaining()+1)
			if err := s.bud.charge(n, func() string { return "matching against a value of " + size(n) + " or more" }); err != nil {
				panic(err)
			}
		}
	}
	var t *match.Text
	if ok {
		t = s.c.set.Scan(str)
	} else {
		// Scanned as it is written: the text itself is written again only if a pattern
		// needs it, which its literals and digits rarely let happen.
		if len(s.slab) == 0 {
			// Growing up to textSlab: a session of a few steps keeps a few texts.
			s.slabN = min(max(2*s.slabN, 4), textSlab)
			s.slab = make([]match.Text, s.slabN)
		}
		s.scan.Start(s.c.set, &s.slab[0])
		s.slab = s.slab[1:]
		w := reprWriter{buf: s.repr[:0], sc: &s.scan, runs: &s.c.reprRuns, quotesAlike: s.c.quotesAlike}
		w.value(v)
		s.repr = w.buf[:0]
		if cap(s.repr) > maxKeptRepr {
			s.repr = nil
		}
		t = s.scan.Text(v, appendRepr)
	}
	if len(s.texts) >= maxCachedTexts || s.textBytes+t.Len() > maxCachedTextBytes {
		clear(s.texts)
		clear(s.scores)
		clear(s.recent[:])
		s.textBytes = 0
	}
	s.textBytes += t.Len()
	s.texts[key] = textEntry{orig: v, text: t}
	s.remember(key, t)
	return t
}

func (s *runner) remember(key textKey, t *match.Text) {
	s.recent[s.next] = recentText{key, t}
	s.next = (s.next + 1) % len(s.recent)
}

func lenOf(rv reflect.Value) int {
	if rv.Kind() == reflect.Pointer {
		return -1
	}
	return rv.Len()
}
