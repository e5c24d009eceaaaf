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
	matchesName = "Matches"      // matches(text, pattern) in call form
	countName   = "__troy_count" // memoized any/all/none/one/count over step lists
	oneName     = "__troy_one"   // the single step a memoized predicate is evaluated on
	getName     = "get"          // get(d, 'a.b.c'[, default])
	stepsName   = "steps"
	prevName    = "prev_steps"
	nextName    = "next_steps"
)

// env is what a condition sees. Steps, PrevSteps and NextSteps are views of one slice:
// PrevSteps = Steps[:StepIndex], NextSteps = Steps[StepIndex+1:]; nothing is copied per step.
type env struct {
	Step      *schemas.Step   `expr:"step"`
	Steps     []*schemas.Step `expr:"steps"`
	StepIndex int             `expr:"step_index"`
	PrevSteps []*schemas.Step `expr:"prev_steps"`
	NextSteps []*schemas.Step `expr:"next_steps"`
	Trace     *TraceInfo      `expr:"trace"`
	Agent     *AgentInfo      `expr:"agent"`

	Matches func(text, pattern any) bool `expr:"Matches"`
	Count   func(key int) int            `expr:"__troy_count"`
	One     []*schemas.Step              `expr:"__troy_one"`
}

// at points the environment at step i of steps.
func (e *env) at(steps []*schemas.Step, i int) {
	e.Steps = steps
	e.StepIndex = i
	e.Step = steps[i]
	e.PrevSteps = steps[:i]
	e.NextSteps = steps[i+1:]
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
		case []*schemas.Step:
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
