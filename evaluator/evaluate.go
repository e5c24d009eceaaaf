package evaluator

import (
	"context"
	"slices"

	"github.com/troy-audit/troy/schemas"
)

// Result is what evaluating a policy over a trace found.
type Result struct {
	// Violations in step order, then rule order.
	Violations []schemas.Violation
	// RuleErrors lists the rules whose condition failed at some step, in rule order.
	RuleErrors []schemas.RuleError
}

// Evaluate evaluates every rule at every step of a finished trace: each condition sees the
// whole trace, so rules that look ahead (next_steps) see what came after.
// Rules with a model judge are not judged here (see EvaluateJudged): the steps where
// their condition holds are rule errors saying so.
func (c *Compiled) Evaluate(t *schemas.Trace) Result {
	r, at, cases := c.evaluate(t)
	if len(cases) > 0 {
		outs, _ := c.ask(context.Background(), nil, cases, t.Steps, TraceInfoOf(t)) // no judge: no I/O, no failure
		r, _ = c.merge(r, at, outs, t.Steps)
	}
	return r
}

// violationBlock is how many violations an evaluation gathers before it starts a new block.
const violationBlock = 1024

// evaluate evaluates every rule at every step, and returns the cases of judge rules,
// unjudged, and when there can be some, the violations' step positions.
func (c *Compiled) evaluate(t *schemas.Trace) (Result, []int, []JudgeCase) {
	s := c.newRunner(TraceInfoOf(t), AgentInfoOf(t))
	// Rules usually match an input and an output per step: room for them from the start
	// spares the cache its growing.
	s.texts = make(map[textKey]textEntry, min(2*len(t.Steps), maxCachedTexts))
	// Violations are gathered in blocks and joined once: one slice grown by append would
	// be copied again and again (by a quarter of its size at a time, once big).
	block := min(violationBlock, 2*len(t.Steps))
	var done [][]schemas.Violation
	vs := make([]schemas.Violation, 0, block)
	var at []int
	var cases []JudgeCase
	steps := views(t.Steps)
	judges := c.HasJudge()
	for i := range steps {
		s.env.at(steps, i)
		n := len(vs)
		vs, cases = s.evalStep(vs, cases, i)
		if judges { // positions are only needed to merge the judge's violations in
			for range len(vs) - n {
				at = append(at, i)
			}
		}
		if len(vs) >= block {
			done = append(done, vs)
			vs = make([]schemas.Violation, 0, block)
		}
	}
	switch {
	case done != nil:
		vs = slices.Concat(append(done, vs)...)
	case len(vs) == 0:
		vs = nil
	}
	return Result{Violations: vs, RuleErrors: s.ruleErrors()}, at, cases
}

// TraceInfoOf is the trace variable conditions see for t.
func TraceInfoOf(t *schemas.Trace) *TraceInfo {
	return &TraceInfo{TraceID: t.TraceID, AgentName: t.AgentName, Metadata: t.Metadata}
}

// AgentInfoOf is the agent variable conditions see for t: the agent's name and the
// trace's metadata.
func AgentInfoOf(t *schemas.Trace) *AgentInfo {
	return &AgentInfo{Name: t.AgentName, Metadata: t.Metadata}
}
