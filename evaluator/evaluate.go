package evaluator

import (
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
func (c *Compiled) Evaluate(t *schemas.Trace) Result {
	s := c.newRunner(TraceInfoOf(t), AgentInfoOf(t))
	var vs []schemas.Violation
	steps := views(t.Steps)
	for i := range steps {
		s.env.at(steps, i)
		vs = s.evalStep(vs)
	}
	return Result{Violations: vs, RuleErrors: s.ruleErrors()}
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
