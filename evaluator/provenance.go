package evaluator

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"

	"github.com/troy-audit/troy/evaluator/provenance"
	"github.com/troy-audit/troy/schemas"
)

// Provenance functions: where the values a step uses (addresses, accounts, paths, amounts,
// codes; see package provenance) came from. The user's request is the input of the first
// llm_call step (of the first step, while there is none) and trace.metadata's task and
// user_request; tool outputs are the outputs of tool_call steps and what observation steps
// carry. At step i only the steps before it count, so a session that evaluates steps as
// they arrive finds what evaluating the finished trace finds.
const (
	untrustedName = "untrusted"     // untrusted(x): values of x seen in a tool output before, never from the user
	fromUserName  = "from_user"     // from_user(v): v appeared in the user's request
	originName    = "origin"        // origin(v): the step ids where v first appeared
	contextName   = "context_score" // context_score(v): injection_score of the text around v in the tool outputs that carried it
)

// Bounds of the provenance index of one evaluation.
const (
	// maxProvValues is how many distinct values of tool outputs are remembered; values seen
	// after that are not, and count as never seen.
	maxProvValues = 1 << 14
	// maxOrigins is how many positions are remembered per value, and origin's longest list.
	maxOrigins = 3
)

// provenanceArgument refuses, when the policy loads, a provenance call whose argument
// cannot be what the function reads: untrusted reads a value (a step's input, a text), not
// a step; from_user and origin read one value, a text or a number.
func provenanceArgument(call *ast.CallNode, name string, src file.Source) error {
	if len(call.Arguments) != 1 {
		return nil // the checker counts arguments
	}
	arg := call.Arguments[0]
	t := arg.Type()
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	var want string
	switch name {
	case untrustedName:
		if t != reflect.TypeFor[*stepView]() && t.Kind() != reflect.Bool {
			return nil
		}
		want = "a value such as step.input"
	default:
		switch t.Kind() {
		case reflect.String, reflect.Int, reflect.Int64, reflect.Float64:
			return nil
		}
		want = "a text"
	}
	msg := fmt.Sprintf("%s takes %s, got %s", name, want, kindName(t))
	if t == reflect.TypeFor[*stepView]() {
		msg = fmt.Sprintf("%s takes %s, got a step", name, want)
	}
	fe := &file.Error{Location: arg.Location(), Message: msg}
	return conditionError(fe.Bind(src))
}

// provIndex is what one evaluation knows of where values appeared. It is built lazily, as
// far as the step being evaluated, and only when a condition asks.
type provIndex struct {
	done int // tool outputs of steps[:done] are indexed
	vals map[string]*provEntry
	// log lists what each step added, in order, so that a step's output arriving late
	// undoes what that step and the later ones added.
	log []provAdd
	// The first llm_call among steps[:typed], or -1.
	typed, llm int
	// The values of the user's request: of a step's input, and of the trace's metadata.
	userAt      int
	user        map[string]struct{}
	metaTexts   [2]string
	meta        map[string]struct{}
	metaScanned bool
	scratch     []provenance.Value
	// context keeps context_score's answer per value and step where a tool output carried
	// it, and found the values of those steps' outputs with where they are; cleared when a
	// step changes.
	context map[provAt]float64
	found   map[int32][]foundAt
}

// foundAt is a value found in a text of a step's output.
type foundAt struct {
	text string
	v    provenance.Value
}

type provAt struct {
	key  string
	step int32
}

// provEntry holds the first positions (step indexes) where a tool output carried a value.
type provEntry struct {
	pos [maxOrigins]int32
	n   int8
}

type provAdd struct {
	key  string
	step int32
}

func newProvIndex() *provIndex {
	return &provIndex{vals: map[string]*provEntry{}, llm: -1, userAt: -1}
}

// truncate forgets what steps[j:] added, after step j changed.
func (p *provIndex) truncate(j int) {
	if p == nil || p.done <= j {
		return
	}
	clear(p.context)
	clear(p.found)
	for len(p.log) > 0 && int(p.log[len(p.log)-1].step) >= j {
		a := p.log[len(p.log)-1]
		p.log = p.log[:len(p.log)-1]
		if e := p.vals[a.key]; e != nil {
			if e.n--; e.n == 0 {
				delete(p.vals, a.key)
			}
		}
	}
	p.done = j
}

// prov returns the index, indexed as far as the current step.
func (s *runner) prov() *provIndex {
	if s.provIdx == nil {
		s.provIdx = newProvIndex()
	}
	p, steps, i := s.provIdx, s.env.Steps, s.env.StepIndex
	for ; p.done < i; p.done++ {
		st := steps[p.done].step
		switch st.Type {
		case schemas.StepToolCall:
			s.walkValues(st.Output, func(v string) { p.add(v, p.done) })
		case schemas.StepObservation:
			s.walkValues(st.Input, func(v string) { p.add(v, p.done) })
			s.walkValues(st.Output, func(v string) { p.add(v, p.done) })
		}
	}
	for ; p.typed <= i && p.typed < len(steps); p.typed++ {
		if p.llm < 0 && steps[p.typed].step.Type == schemas.StepLLMCall {
			p.llm = p.typed
		}
	}
	u := p.llm
	if u < 0 || u > i {
		u = 0 // no llm_call yet: the first step's input is the request
	}
	if p.userAt != u {
		p.userAt = u
		p.user = map[string]struct{}{}
		s.walkValues(steps[u].step.Input, func(v string) { p.user[strings.Clone(v)] = struct{}{} })
	}
	task, _ := s.trace.Metadata["task"].(string)
	req, _ := s.trace.Metadata["user_request"].(string)
	if !p.metaScanned || p.metaTexts != [2]string{task, req} {
		p.metaScanned, p.metaTexts, p.meta = true, [2]string{task, req}, map[string]struct{}{}
		s.walkValues(task, func(v string) { p.meta[strings.Clone(v)] = struct{}{} })
		s.walkValues(req, func(v string) { p.meta[strings.Clone(v)] = struct{}{} })
	}
	return p
}

func (p *provIndex) add(v string, step int) {
	e := p.vals[v]
	switch {
	case e == nil:
		if len(p.vals) >= maxProvValues {
			return
		}
		v = strings.Clone(v) // not the output it was read from, which may be big
		e = &provEntry{}
		p.vals[v] = e
	case int(e.n) == maxOrigins || int(e.pos[e.n-1]) == step:
		return
	}
	e.pos[e.n] = int32(step)
	e.n++
	p.log = append(p.log, provAdd{v, int32(step)})
}

func (p *provIndex) fromUser(v string) bool {
	if _, ok := p.user[v]; ok {
		return true
	}
	_, ok := p.meta[v]
	return ok
}

// walkValues calls fn with each value found in x's texts (and numbers, written out), in
// the order of x's keys, charging the texts read to the running condition's budget.
func (s *runner) walkValues(x any, fn func(string)) {
	s.walkFound(x, func(_ string, v provenance.Value) { fn(v.Text) })
}

// walkFound calls fn with each value found in x's texts and the text it was found in.
func (s *runner) walkFound(x any, fn func(text string, v provenance.Value)) {
	walkTexts(x, func(text string) {
		if s.bud.active {
			n := int64(min(len(text), provenance.MaxBytes))
			if err := s.bud.charge(n, func() string { return "reading a text of " + size(n) + " for values" }); err != nil {
				panic(err)
			}
		}
		p := s.provScratch()
		p.scratch = provenance.Extract(text, p.scratch[:0])
		for _, val := range p.scratch {
			fn(text, val)
		}
	})
}

// walkTexts calls fn with each text of x (numbers written out), in the order of x's keys.
func walkTexts(x any, fn func(string)) {
	switch v := x.(type) {
	case string:
		fn(v)
	case float64:
		if v == float64(int64(v)) {
			fn(strconv.FormatInt(int64(v), 10))
		}
	case int:
		fn(strconv.Itoa(v))
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			walkTexts(v[k], fn)
		}
	case []any:
		for _, e := range v {
			walkTexts(e, fn)
		}
	case []string:
		for _, e := range v {
			walkTexts(e, fn)
		}
	}
}

// provScratch is the index's reusable list of extracted values; the walk is not
// reentrant in the same text, so one list serves, copied out before the next text.
func (s *runner) provScratch() *provIndex {
	if s.provIdx == nil {
		s.provIdx = newProvIndex()
	}
	return s.provIdx
}

// untrusted is untrusted(x): the values of x that a tool output before the current step
// carried and the user's request did not, in the order x has them.
func (s *runner) untrusted(x any) []any {
	if _, ok := x.(*stepView); ok {
		panic(fmt.Errorf("%s takes a value such as step.input, got a step", untrustedName))
	}
	p, i := s.prov(), s.env.StepIndex
	out := []any{}
	if len(p.vals) == 0 {
		return out // no tool output carried a value yet: nothing to read x for
	}
	var found []string
	s.walkValues(x, func(v string) { found = append(found, v) })
	for _, v := range found {
		e := p.vals[v]
		if e == nil || int(e.pos[0]) >= i || p.fromUser(v) || containsAny(out, v) {
			continue
		}
		out = append(out, strings.Clone(v))
	}
	return out
}

// containsAny reports whether list holds the text v; lists here are at most the values of
// one argument.
func containsAny(list []any, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// keys are the values a from_user or origin argument stands for: the values found in it,
// or the text itself when none is (a value as untrusted returns it, say a domain).
func (s *runner) provKeys(name string, v any) []string {
	var out []string
	switch x := v.(type) {
	case nil:
		return nil
	case string, float64, int:
		s.walkValues(x, func(t string) { out = append(out, strings.Clone(t)) })
		if t, ok := x.(string); ok && len(out) == 0 && strings.TrimSpace(t) != "" {
			out = append(out, strings.TrimSpace(t))
		}
	default:
		panic(fmt.Errorf("%s takes a text, got %s", name, kindName(reflect.TypeOf(v))))
	}
	return out
}

// fromUser is from_user(v): whether the values of v all appeared in the user's request.
func (s *runner) fromUser(v any) bool {
	keys := s.provKeys(fromUserName, v)
	if len(keys) == 0 {
		return false
	}
	p := s.prov()
	for _, k := range keys {
		if !p.fromUser(k) {
			return false
		}
	}
	return true
}

// origin is origin(v): the ids of the first steps (up to maxOrigins) where v's first value
// appeared before the current step: the user's request, or a tool output.
func (s *runner) origin(v any) []any {
	keys := s.provKeys(originName, v)
	out := []any{}
	if len(keys) == 0 {
		return out
	}
	p, i, steps := s.prov(), s.env.StepIndex, s.env.Steps
	k := keys[0]
	var at []int
	if _, ok := p.user[k]; ok {
		at = append(at, p.userAt)
	}
	if e := p.vals[k]; e != nil {
		for _, pos := range e.pos[:e.n] {
			if int(pos) < i && !slices.Contains(at, int(pos)) {
				at = append(at, int(pos))
			}
		}
	}
	slices.Sort(at)
	for _, j := range at[:min(len(at), maxOrigins)] {
		out = append(out, steps[j].step.StepID)
	}
	return out
}

// Bounds of the text around a value that context_score reads: more before it than after,
// since an instruction names what to do before it names where.
const (
	contextBefore = 400
	contextAfter  = 200
)

// contextScore is context_score(v): the injection score of the text around v (of its first
// value, when v holds several) in the tool outputs before the current step that carried
// it, the highest where it appeared more than once; 0 when no tool output carried it.
// Around is the same text (a message, a review, a field of an output) within
// contextBefore and contextAfter bytes, cut at white space: an instruction planted next to
// an address scores high even when the rest of the output is ordinary, and ordinary
// requests elsewhere in the output do not add up with it.
func (s *runner) contextScore(v any) float64 {
	keys := s.provKeys(contextName, v)
	if len(keys) == 0 {
		return 0
	}
	p, i := s.prov(), s.env.StepIndex
	k := keys[0]
	e := p.vals[k]
	if e == nil {
		return 0
	}
	best := 0.0
	for _, pos := range e.pos[:e.n] {
		if int(pos) >= i {
			break
		}
		at := provAt{k, pos}
		sc, ok := p.context[at]
		if !ok {
			for _, f := range s.foundIn(p, pos) {
				if f.v.Text == k {
					sc = max(sc, s.scoreText(around(f.text, f.v.Pos, contextBefore, contextAfter)))
				}
			}
			if p.context == nil {
				p.context = map[provAt]float64{}
			}
			p.context[at] = sc
		}
		best = max(best, sc)
	}
	return best
}

// foundIn returns the values of step j's tool output, read once.
func (s *runner) foundIn(p *provIndex, j int32) []foundAt {
	if f, ok := p.found[j]; ok {
		return f
	}
	var f []foundAt
	keep := func(text string, v provenance.Value) {
		v.Text = strings.Clone(v.Text)
		f = append(f, foundAt{text, v})
	}
	st := s.env.Steps[j].step
	s.walkFound(st.Output, keep)
	if st.Type == schemas.StepObservation {
		s.walkFound(st.Input, keep)
	}
	if p.found == nil {
		p.found = map[int32][]foundAt{}
	}
	p.found[j] = f
	return f
}

// around is text from about before bytes ahead of pos to about after bytes past it, cut at
// white space so that no word is split, and at the blank lines that end pos's paragraph.
func around(text string, pos, before, after int) string {
	from, to := max(pos-before, 0), min(pos+after, len(text))
	if j, n := lastBreak(text[from:pos]); j >= 0 {
		from += j + n // a paragraph break: what is before it is about something else
	} else if from > 0 {
		if j := strings.IndexAny(text[from:pos], " \t\n"); j >= 0 {
			from += j + 1
		}
	}
	if j := firstBreak(text[pos:to]); j >= 0 {
		to = pos + j
	} else if to < len(text) {
		if j := strings.LastIndexAny(text[pos:to], " \t\n"); j > 0 {
			to = pos + j
		}
	}
	return text[from:to]
}

// Paragraph breaks: a blank line, as text or escaped in a JSON or Python string.
const (
	blankLine   = "\n\n"
	escapedLine = `\n\n`
)

// lastBreak returns where the last paragraph break in s starts, and its length; -1 when
// there is none.
func lastBreak(s string) (int, int) {
	i, j := strings.LastIndex(s, blankLine), strings.LastIndex(s, escapedLine)
	if j > i {
		return j, len(escapedLine)
	}
	return i, len(blankLine)
}

// firstBreak returns where the first paragraph break in s starts; -1 when there is none.
func firstBreak(s string) int {
	i, j := strings.Index(s, blankLine), strings.Index(s, escapedLine)
	if i < 0 || j >= 0 && j < i {
		return j
	}
	return i
}
