// Package replay walks through a finished audit step by step: in a terminal UI, or printed
// whole for pipes and CI. It can re-evaluate the trace with another policy and show what
// changed.
package replay

import (
	"slices"
	"strings"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/scorer"
)

// Session is an audit prepared for stepping through: violations and explanations by step,
// and the re-evaluation with another policy, if any.
type Session struct {
	Audit        *schemas.AuditResult
	Source       string
	byStep       map[string][]schemas.Violation
	explanations map[string]*schemas.StepExplanation
	violating    []int // positions of steps with violations, in order
	Reeval       *Reeval
}

// NewSession indexes an audit.
func NewSession(a *schemas.AuditResult, source string) *Session {
	s := &Session{Audit: a, Source: source, byStep: map[string][]schemas.Violation{}, explanations: map[string]*schemas.StepExplanation{}}
	for _, v := range a.Violations {
		s.byStep[v.StepID] = append(s.byStep[v.StepID], v)
	}
	for i := range a.Explanations {
		s.explanations[a.Explanations[i].StepID] = &a.Explanations[i]
	}
	for i, st := range a.Trace.Steps {
		if len(s.byStep[st.StepID]) > 0 {
			s.violating = append(s.violating, i)
		}
	}
	return s
}

// Steps is the number of steps.
func (s *Session) Steps() int { return len(s.Audit.Trace.Steps) }

// Step returns the step at a position.
func (s *Session) Step(i int) *schemas.Step { return s.Audit.Trace.Steps[i] }

// Violations returns the violations at a step.
func (s *Session) Violations(stepID string) []schemas.Violation { return s.byStep[stepID] }

// Explanation returns a step's explanation, or nil.
func (s *Session) Explanation(stepID string) *schemas.StepExplanation { return s.explanations[stepID] }

// Worst is the most severe severity among a step's violations, or "".
func (s *Session) Worst(stepID string) string {
	best := len(schemas.Severities())
	for _, v := range s.byStep[stepID] {
		if i := slices.Index(schemas.Severities(), v.Severity); i >= 0 && i < best {
			best = i
		}
	}
	if best == len(schemas.Severities()) {
		return ""
	}
	return schemas.Severities()[best]
}

// NextViolation returns the position of the next (dir 1) or previous (dir -1) step with a
// violation from position i, or i when there is none.
func (s *Session) NextViolation(i, dir int) int {
	if dir > 0 {
		for _, p := range s.violating {
			if p > i {
				return p
			}
		}
		return i
	}
	for k := len(s.violating) - 1; k >= 0; k-- {
		if s.violating[k] < i {
			return s.violating[k]
		}
	}
	return i
}

// Search returns the position of the next step after i (wrapping) whose description or
// input contains text, case-insensitively, or -1.
func (s *Session) Search(text string, i int) int {
	text = strings.ToLower(text)
	n := s.Steps()
	for k := 1; k <= n; k++ {
		p := (i + k) % n
		st := s.Step(p)
		in, _ := pyjson.Marshal(st.Input)
		if strings.Contains(strings.ToLower(st.Description), text) || strings.Contains(strings.ToLower(string(in)), text) {
			return p
		}
	}
	return -1
}

// Reeval is the trace evaluated again with another policy.
type Reeval struct {
	Policy           string
	OldRisk, NewRisk int
	Violations       []schemas.Violation
	// Added and Removed list, per step id, the rules violated only with the new policy
	// and only in the audit.
	Added, Removed map[string][]schemas.Violation
}

// Reevaluate evaluates the session's trace with c and records the differences.
func (s *Session) Reevaluate(c *evaluator.Compiled, name string) *Reeval {
	res := c.Evaluate(s.Audit.Trace)
	r := &Reeval{Policy: name, OldRisk: s.Audit.RiskScore, NewRisk: scorer.Score(res.Violations, c.Weights()),
		Violations: res.Violations, Added: map[string][]schemas.Violation{}, Removed: map[string][]schemas.Violation{}}
	key := func(v schemas.Violation) string { return v.StepID + "\x00" + v.RuleID }
	old, now := map[string]bool{}, map[string]bool{}
	for _, v := range s.Audit.Violations {
		old[key(v)] = true
	}
	for _, v := range res.Violations {
		now[key(v)] = true
		if !old[key(v)] {
			r.Added[v.StepID] = append(r.Added[v.StepID], v)
		}
	}
	for _, v := range s.Audit.Violations {
		if !now[key(v)] {
			r.Removed[v.StepID] = append(r.Removed[v.StepID], v)
		}
	}
	s.Reeval = r
	// j and k also stop at steps the new policy flags.
	for i, st := range s.Audit.Trace.Steps {
		if len(r.Added[st.StepID]) > 0 && !slices.Contains(s.violating, i) {
			s.violating = append(s.violating, i)
		}
	}
	slices.Sort(s.violating)
	return r
}

// Changed counts the violations added and removed.
func (r *Reeval) Changed() (added, removed int) {
	for _, v := range r.Added {
		added += len(v)
	}
	for _, v := range r.Removed {
		removed += len(v)
	}
	return added, removed
}
