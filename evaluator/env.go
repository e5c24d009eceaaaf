package evaluator

import (
	"strconv"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

// TraceInfo is the trace variable of a condition.
type TraceInfo struct {
	TraceID   string         `expr:"trace_id"`
	AgentName string         `expr:"agent_name"`
	Metadata  map[string]any `expr:"metadata"`
}

// Field implements path lookup for get().
func (t *TraceInfo) Field(name string) (any, bool) {
	switch name {
	case "trace_id":
		return t.TraceID, true
	case "agent_name":
		return t.AgentName, true
	case "metadata":
		return t.Metadata, true
	}
	return nil, false
}

// AgentInfo is the agent variable of a condition.
type AgentInfo struct {
	Name     string         `expr:"name"`
	Metadata map[string]any `expr:"metadata"`
}

// Field implements path lookup for get().
func (a *AgentInfo) Field(name string) (any, bool) {
	switch name {
	case "name":
		return a.Name, true
	case "metadata":
		return a.Metadata, true
	}
	return nil, false
}

// Names conditions use, and names the compiler gives to rewritten calls.
const (
	matchesName  = "Matches"         // matches(text, pattern) in call form
	countName    = "__troy_count"    // memoized any/all/none/one/count over step lists
	oneName      = "__troy_one"      // the single step a memoized predicate is evaluated on
	getName      = "get"             // get(d, 'a.b.c'[, default])
	scoreName    = "injection_score" // injection_score(text): instructions to the model in data, 0 to 1
	injectedName = "injected"        // injected(text): injection_score(text) >= inject.Threshold
	fieldName    = "__troy_field"    // member access a.b and a['b'], rewritten for speed
	stepsName    = "steps"
	prevName     = "prev_steps"
	nextName     = "next_steps"
	// internalPrefix starts the names above that conditions cannot use.
	internalPrefix = "__troy"
	budgetName     = "__troy_budget" // the evaluation's budget, passed to guards and ticks
	guardName      = "__troy_guard"  // a budget-aware builtin call (see guards)
	tickName       = "__troy_tick"   // one iteration of a loop, counted
	addName        = "__troy_add"    // a + b, a concatenation of texts counted
)

// stepView is how a step looks to conditions. Its text fields are held as interface values
// so that reading them in a condition allocates nothing; its maps are the step's own.
type stepView struct {
	StepID       any            `expr:"step_id"`
	Type         any            `expr:"type"`
	Description  any            `expr:"description"`
	Input        map[string]any `expr:"input"`
	Output       map[string]any `expr:"output"`
	Metadata     map[string]any `expr:"metadata"`
	Timestamp    any            `expr:"timestamp"`
	ParentStepID any            `expr:"parent_step_id"`
	step         *schemas.Step
	typ          uint8 // the type's index in schemas.StepTypes, or otherType
	cats         []any // category(step), once inferred
	catsDone     bool
}

// otherType is the type index of a step of none of schemas.StepTypes.
const otherType = 4

func (v *stepView) set(s *schemas.Step) {
	*v = stepView{
		StepID:      s.StepID,
		Type:        boxType(s.Type),
		Description: s.Description,
		Input:       s.Input,
		Output:      s.Output,
		Metadata:    s.Metadata,
		step:        s,
		typ:         typeIndex(s.Type),
	}
	if s.Timestamp != nil {
		v.Timestamp = *s.Timestamp
	}
	if s.ParentStepID != nil {
		v.ParentStepID = *s.ParentStepID
	}
}

func typeIndex(t string) uint8 {
	switch t {
	case schemas.StepLLMCall:
		return 0
	case schemas.StepToolCall:
		return 1
	case schemas.StepDecision:
		return 2
	case schemas.StepObservation:
		return 3
	}
	return otherType
}

// boxType returns the step type as an interface holding a constant, which costs no
// allocation.
func boxType(t string) any {
	switch t {
	case schemas.StepLLMCall:
		return schemas.StepLLMCall
	case schemas.StepToolCall:
		return schemas.StepToolCall
	case schemas.StepDecision:
		return schemas.StepDecision
	case schemas.StepObservation:
		return schemas.StepObservation
	}
	return t
}

// Field implements path lookup for get().
func (v *stepView) Field(name string) (any, bool) { return v.step.Field(name) }

// views returns a view of every step, allocated together.
func views(steps []*schemas.Step) []*stepView {
	vs := make([]stepView, len(steps))
	out := make([]*stepView, len(steps))
	for i, s := range steps {
		vs[i].set(s)
		out[i] = &vs[i]
	}
	return out
}

// env is what a condition sees. Steps, PrevSteps and NextSteps are views of one slice:
// PrevSteps = Steps[:StepIndex], NextSteps = Steps[StepIndex+1:]; nothing is copied per step.
// Conditions read it through vars, a map, which expr reads without reflection.
type env struct {
	Step      *stepView
	Steps     []*stepView
	StepIndex int
	PrevSteps []*stepView
	NextSteps []*stepView
	One       []*stepView // the single step a memoized predicate is evaluated on
	vars      map[string]any
	stale     bool // vars do not hold the step yet: see sync
}

// envTypes is the shape of vars, with typed zero values, for compiling conditions.
func envTypes() map[string]any {
	return map[string]any{
		"step":        (*stepView)(nil),
		stepsName:     []*stepView(nil),
		"step_index":  0,
		prevName:      []*stepView(nil),
		nextName:      []*stepView(nil),
		"trace":       (*TraceInfo)(nil),
		"agent":       (*AgentInfo)(nil),
		matchesName:   (func(text, pattern any) bool)(nil),
		scoreName:     (func(text any) float64)(nil),
		injectedName:  (func(text any) bool)(nil),
		countName:     (func(key int) int)(nil),
		fieldName:     (func(base, key any) any)(nil),
		oneName:       []*stepView(nil),
		budgetName:    (*budget)(nil),
		tickName:      (func(cost int) bool)(nil),
		addName:       (func(a, b any) any)(nil),
		categoryName:  (func(step any) []any)(nil),
		untrustedName: (func(x any) []any)(nil),
		fromUserName:  (func(v any) bool)(nil),
		originName:    (func(v any) []any)(nil),
		contextName:   (func(v any) float64)(nil),
	}
}

// at points the environment at step i of steps.
func (e *env) at(steps []*stepView, i int) {
	e.Steps = steps
	e.StepIndex = i
	e.Step = steps[i]
	e.PrevSteps = steps[:i]
	e.NextSteps = steps[i+1:]
	e.stale = true
}

// sync puts the current step into vars before the expression machine runs: most steps
// are decided by conditions compiled to Go, which read the fields above, so a step's
// vars (a few map writes, and boxed values that allocate) are only made when needed.
func (e *env) sync() {
	if !e.stale {
		return
	}
	e.stale = false
	i := e.StepIndex
	e.vars["step"] = e.Step
	e.vars[stepsName] = e.Steps
	e.vars["step_index"] = i
	e.vars[prevName] = e.PrevSteps
	e.vars[nextName] = e.NextSteps
}

// fielder is implemented by the values get() can walk into besides maps and lists.
type fielder interface {
	Field(name string) (any, bool)
}

// get walks a dot-separated path through steps, maps and lists (numeric segments index
// lists), returning def when any part is missing or null, as the Python tool's get() does.
func get(d any, path string, def any) any {
	cur := d
	for {
		seg, rest, more := strings.Cut(path, ".")
		var ok bool
		switch v := cur.(type) {
		case map[string]any:
			cur, ok = v[seg]
		case fielder:
			cur, ok = v.Field(seg)
		case []any:
			var i int
			if i, ok = listIndex(seg, len(v)); ok {
				cur = v[i]
			}
		case []*stepView:
			var i int
			if i, ok = listIndex(seg, len(v)); ok {
				cur = v[i]
			}
		}
		if !ok || cur == nil {
			return def
		}
		if !more {
			return cur
		}
		path = rest
	}
}

func listIndex(seg string, n int) (int, bool) {
	i, err := strconv.Atoi(seg)
	if err != nil {
		return 0, false
	}
	if i < 0 {
		i += n
	}
	return i, i >= 0 && i < n
}
