package evaluator

import (
	"context"
	"slices"

	"github.com/troy-audit/troy/schemas"
)

// Session evaluates one trace incrementally, as its steps arrive: a guard session, or a
// trace the evaluator stage follows. Steps are appended, their outputs set later, and
// EvaluateNow evaluates a step by the rules that can be decided without later steps;
// Finish gives the verdict of the trace so far. It is not safe for concurrent use.
type Session struct {
	c *Compiled
	r *runner
	// lookahead: later steps will come, so the rules that read them wait for Finish. Without
	// it every rule is evaluated by EvaluateNow and sees no later step.
	lookahead bool
	steps     []*schemas.Step
	views     []*stepView
	index     map[string]int
	// The outcomes of EvaluateNow that are not plain false, of every step evaluated, in
	// step order in one array (no allocation per step, and little for the collector to
	// scan in a long session); step i's are outcomes[from[i]:from[i+1]].
	outcomes []stepOutcome
	from     []int
}

// stepOutcome is a rule's verdict at a step, kept when it is a violation or a failure.
type stepOutcome struct {
	rule     int32
	violated bool
	judge    bool // the condition of a judge rule held: a case for the model
	err      string
}

// SessionOptions configure a session.
type SessionOptions struct {
	// Trace and Agent are what conditions see as trace and agent.
	Trace *TraceInfo
	Agent *AgentInfo
	// Lookahead keeps the rules that read later steps (next_steps, steps) for Finish, when
	// the whole trace is known. Without it they are evaluated with the steps so far, as a
	// guard does, which cannot wait for steps not yet taken.
	Lookahead bool
}

// Verdict is a session's result: violations in step then rule order, with the position of
// each violation's step (step ids may repeat), and the rules that failed.
type Verdict struct {
	Result
	Steps []int
}

// NewSession starts an incremental evaluation.
func (c *Compiled) NewSession(o SessionOptions) *Session {
	if o.Trace == nil {
		o.Trace = &TraceInfo{Metadata: map[string]any{}}
	}
	if o.Agent == nil {
		o.Agent = &AgentInfo{Name: o.Trace.AgentName, Metadata: o.Trace.Metadata}
	}
	return &Session{c: c, r: c.newRunner(o.Trace, o.Agent), lookahead: o.Lookahead, index: map[string]int{}}
}

// Compiled is the policy the session evaluates.
func (s *Session) Compiled() *Compiled { return s.c }

// Len is the number of steps appended.
func (s *Session) Len() int { return len(s.steps) }

// Step returns the i-th step, as last set.
func (s *Session) Step(i int) *schemas.Step { return s.steps[i] }

// Steps returns the steps so far.
func (s *Session) Steps() []*schemas.Step { return slices.Clone(s.steps) }

// Index returns the position of the latest step with the id.
func (s *Session) Index(stepID string) (int, bool) {
	i, ok := s.index[stepID]
	return i, ok
}

// Append adds a step and returns its position. The session keeps the step: the caller
// must not change it afterwards. A step_id used again names a step of its own; an output
// for that id goes to its latest step.
func (s *Session) Append(step *schemas.Step) int {
	// Appending keeps prev_steps a view of the history: no copy per step.
	v := &stepView{}
	v.set(step)
	s.index[step.StepID] = len(s.steps)
	s.steps = append(s.steps, step)
	s.views = append(s.views, v)
	return len(s.steps) - 1
}

// SetOutput sets the output of the latest step with the id and returns its position; what
// was known about that step and the ones after it is forgotten. The session keeps the map.
func (s *Session) SetOutput(stepID string, output map[string]any) (int, bool) {
	j, ok := s.index[stepID]
	if !ok {
		return 0, false
	}
	// Replace rather than mutate: cached verdicts and texts are keyed by the old step.
	updated := *s.steps[j]
	updated.Output = output
	if updated.Output == nil {
		updated.Output = map[string]any{}
	}
	s.steps[j] = &updated
	v := &stepView{}
	v.set(&updated)
	s.views[j] = v
	s.r.forget(j)
	s.r.provIdx.truncate(j)
	return j, true
}

// UseAgentMetadata makes conditions see m as the agent's metadata (agent.metadata and
// trace.metadata) from now on. Memoized counts over earlier steps may have read the old
// metadata, so they are dropped.
func (s *Session) UseAgentMetadata(m map[string]any) {
	a, _ := s.r.env.vars["agent"].(*AgentInfo)
	a.Metadata, s.r.trace.Metadata = m, m
	s.r.forget(0)
}

// now reports whether a rule is evaluated by EvaluateNow.
func (s *Session) nowRule(r *rule) bool { return !s.lookahead || !r.ahead }

// EvaluateNow evaluates step i by the rules that read no later step (every rule, without
// lookahead), in rule order, and returns its violations and the rules that failed. What it
// finds replaces what an earlier call found at that step, in the verdict.
func (s *Session) EvaluateNow(i int) ([]schemas.Violation, []schemas.StepRuleError) {
	// Evaluating a step again forgets what was found at the steps after it, which are
	// evaluated again in order (as after SetOutput); steps never evaluated have no outcomes.
	if i < len(s.from) {
		s.outcomes, s.from = s.outcomes[:s.from[i]], s.from[:i]
	}
	for len(s.from) <= i {
		s.from = append(s.from, len(s.outcomes))
	}
	s.r.env.at(s.views, i)
	var vs []schemas.Violation
	var errs []schemas.StepRuleError
	for _, r := range s.c.rulesFor(s.r.env.Step) {
		if !s.nowRule(r) {
			continue
		}
		k := r.index
		ok, err := s.r.outcome(r)
		switch {
		case err != nil:
			msg := oneLine(conditionError(err).Error())
			s.outcomes = append(s.outcomes, stepOutcome{rule: int32(k), err: msg})
			errs = append(errs, schemas.StepRuleError{RuleID: r.RuleID, Error: msg})
		case ok && r.Judge != nil:
			// Not a violation until a model says so: see JudgeCases and FinishJudged.
			s.outcomes = append(s.outcomes, stepOutcome{rule: int32(k), judge: true})
		case ok:
			s.outcomes = append(s.outcomes, stepOutcome{rule: int32(k), violated: true})
			vs = append(vs, violation(r, s.steps[i]))
		}
	}
	return vs, errs
}

// JudgeCases returns the cases of judge rules that EvaluateNow found at step i: the
// rules whose condition holds there and whose verdict is the model's.
func (s *Session) JudgeCases(i int) []JudgeCase {
	var out []JudgeCase
	for _, o := range s.found(i) {
		if o.judge {
			jc := judgeCase(s.c.rules[o.rule], i)
			jc.Steps, jc.AgentName, jc.TraceMetadata = s.steps[:i+1:i+1], s.r.trace.AgentName, s.r.trace.Metadata
			out = append(out, jc)
		}
	}
	return out
}

// found is what EvaluateNow kept of step i.
func (s *Session) found(i int) []stepOutcome {
	switch {
	case i >= len(s.from):
		return nil
	case i+1 < len(s.from):
		return s.outcomes[s.from[i]:s.from[i+1]]
	}
	return s.outcomes[s.from[i]:]
}

// Finish evaluates the rules that look ahead at every step, over the steps so far, and
// returns the verdict of the whole trace: what post-hoc evaluation of the same steps
// finds, in step then rule order. It can be called again after more steps. Rules with a
// model judge are not judged (see FinishJudged): the steps where their condition holds
// are rule errors saying so, as in Evaluate.
func (s *Session) Finish() Verdict {
	v, cases := s.finish()
	if len(cases) > 0 {
		outs, _ := s.c.ask(context.Background(), nil, cases, s.steps, s.r.trace) // no judge: no I/O, no failure
		v.Result, v.Steps = s.c.merge(v.Result, v.Steps, outs, s.steps)
	}
	return v
}

// finish is Finish with the cases of judge rules left unjudged.
func (s *Session) finish() (Verdict, []JudgeCase) {
	var out Verdict
	var cases []JudgeCase
	errs := make([]schemas.RuleError, len(s.c.rules))
	fail := func(k, i int, msg string) {
		e := &errs[k]
		if e.Count == 0 {
			e.RuleID, e.FirstStep, e.FirstError = s.c.rules[k].RuleID, s.steps[i].StepID, msg
		}
		e.Count++
	}
	for i := range s.steps {
		now := s.found(i)
		if s.lookahead {
			s.r.env.at(s.views, i)
		}
		for k, r := range s.c.rules {
			if s.nowRule(r) {
				for len(now) > 0 && int(now[0].rule) < k {
					now = now[1:]
				}
				if len(now) > 0 && int(now[0].rule) == k {
					if now[0].err != "" {
						fail(k, i, now[0].err)
					} else if now[0].judge {
						cases = append(cases, judgeCase(r, i))
					} else if now[0].violated {
						out.Violations = append(out.Violations, violation(r, s.steps[i]))
						out.Steps = append(out.Steps, i)
					}
				}
				continue
			}
			ok, err := s.r.outcome(r)
			if err != nil {
				fail(k, i, oneLine(conditionError(err).Error()))
				continue
			}
			if ok && r.Judge != nil {
				cases = append(cases, judgeCase(r, i))
			} else if ok {
				out.Violations = append(out.Violations, violation(r, s.steps[i]))
				out.Steps = append(out.Steps, i)
			}
		}
	}
	for _, e := range errs {
		if e.Count > 0 {
			out.RuleErrors = append(out.RuleErrors, e)
		}
	}
	return out, cases
}
