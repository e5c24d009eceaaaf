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
	untrustedName = "untrusted" // untrusted(x): values of x seen in a tool output before, never from the user
	fromUserName  = "from_user" // from_user(v): v appeared in the user's request
	originName    = "origin"    // origin(v): the step ids where v first appeared
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
	switch v := x.(type) {
	case string:
		if s.bud.active {
			n := int64(min(len(v), provenance.MaxBytes))
			if err := s.bud.charge(n, func() string { return "reading a text of " + size(n) + " for values" }); err != nil {
				panic(err)
			}
		}
		p := s.provScratch()
		p.scratch = provenance.Extract(v, p.scratch[:0])
		vals := p.scratch
		for _, val := range vals {
			fn(val.Text)
		}
	case float64:
		if v == float64(int64(v)) {
			s.walkValues(strconv.FormatInt(int64(v), 10), fn)
		}
	case int:
		s.walkValues(strconv.Itoa(v), fn)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s.walkValues(v[k], fn)
		}
	case []any:
		for _, e := range v {
			s.walkValues(e, fn)
		}
	case []string:
		for _, e := range v {
			s.walkValues(e, fn)
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
