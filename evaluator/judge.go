package evaluator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// Judge is the port through which a model gives the verdict of a judge rule (a rule with
// policies.Judge) at a step where its condition holds. The engine does no I/O: whoever
// evaluates with a model (the evaluator stage, the guard service, a local guard) passes
// an implementation; without one, judge cases are recorded as not evaluated.
type Judge interface {
	// Judge answers whether the case's step is what the user asked for. An error means
	// no answer (the model failed, the deadline passed, the budget is spent).
	Judge(ctx context.Context, c JudgeCase) (JudgeVerdict, error)
}

// JudgeCase is a step at which a judge rule's condition holds: the model decides whether
// the rule is violated there.
type JudgeCase struct {
	RuleID   string
	Question string
	// OnError and Timeout are the rule's: what a guard does without an answer, and how
	// long it waits for one.
	OnError string
	Timeout time.Duration
	// WithoutModel is the rule's: whether the case is a rule error or left out when no
	// model is configured.
	WithoutModel string
	// Step is the position of the step judged. Steps is the trace so far (every step up
	// to and including the one judged), AgentName and TraceMetadata what conditions see
	// as agent.name and trace.metadata; they are set when the case is given to a Judge.
	Step          int
	Steps         []*schemas.Step
	AgentName     string
	TraceMetadata map[string]any
	rule          int
}

// JudgeVerdict is a model's answer about a case.
type JudgeVerdict struct {
	// Aligned says the step is what the user asked for: the rule is not violated.
	Aligned bool
	// Reason is the model's account, the violation's details when not aligned.
	Reason string
}

// NotJudged is the rule error of a judge rule whose cases were not given to a model.
const NotJudged = "judge rule not evaluated: no model configured (the condition held; set a model to have it judged)"

// judgeWorkers bounds the cases of one trace asked at once; the model's client bounds the
// requests in flight across traces.
const judgeWorkers = 8

// judgeCase is the case of rule r at step i.
func judgeCase(r *rule, i int) JudgeCase {
	j := r.Judge
	return JudgeCase{RuleID: r.RuleID, Question: j.Question, OnError: j.OnError, Timeout: j.Timeout, WithoutModel: j.WithoutModel, Step: i, rule: r.index}
}

// judged is the outcome of one case: a verdict, or why there is none.
type judged struct {
	c   JudgeCase
	v   JudgeVerdict
	err error
}

// skipped reports whether the case is left out: no model is configured and its rule
// says to skip it then.
func (o judged) skipped() bool {
	return o.err == errNoJudge && o.c.WithoutModel == policies.JudgeWithoutModelSkip
}

// judgeViolation is the violation of a case the model judged not aligned.
func judgeViolation(r *rule, s *schemas.Step, reason string) schemas.Violation {
	v := violation(r, s)
	if reason == "" {
		reason = "no reason given"
	}
	v.Details += ": the model judge found it is not what the user asked for: " + oneLine(reason)
	return v
}

// ask gives each case to j, a bounded number at once, over the steps. With j nil every
// case is not judged. It fails only when ctx ends.
func (c *Compiled) ask(ctx context.Context, j Judge, cases []JudgeCase, steps []*schemas.Step, info *TraceInfo) ([]judged, error) {
	out := make([]judged, len(cases))
	if j == nil {
		for k, jc := range cases {
			out[k] = judged{c: jc, err: errNoJudge}
		}
		return out, nil
	}
	for k := range cases {
		jc := &cases[k]
		jc.Steps, jc.AgentName, jc.TraceMetadata = steps[:jc.Step+1:jc.Step+1], info.AgentName, info.Metadata
		out[k].c = *jc
	}
	// A few workers take the cases in order: goroutines stay bounded on a long trace.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(judgeWorkers, len(cases)) {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < len(cases) && ctx.Err() == nil; k = int(next.Add(1) - 1) {
				out[k].v, out[k].err = j.Judge(ctx, out[k].c)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("model judge: %w", err)
	}
	return out, nil
}

type notJudgedError struct{}

func (notJudgedError) Error() string { return NotJudged }

var errNoJudge error = notJudgedError{}

// merge adds the outcomes of judged cases to a result: the violations of steps judged
// not aligned in step then rule order among the others (at holds the position of each of
// r's violations), and the cases without an answer as rule errors. It returns the merged
// violations' positions too.
func (c *Compiled) merge(r Result, at []int, outs []judged, steps []*schemas.Step) (Result, []int) {
	if len(outs) == 0 {
		return r, at
	}
	index := make(map[string]int, len(c.rules))
	for _, ru := range c.rules {
		index[ru.RuleID] = ru.index
	}
	type placed struct {
		step, rule int
		v          schemas.Violation
	}
	all := make([]placed, 0, len(r.Violations)+len(outs))
	for k, v := range r.Violations {
		all = append(all, placed{at[k], index[v.RuleID], v})
	}
	errs := map[int]*schemas.RuleError{}
	for _, e := range r.RuleErrors {
		e := e
		errs[index[e.RuleID]] = &e
	}
	for _, o := range outs {
		ru := c.rules[o.c.rule]
		switch {
		case o.skipped():
		case o.err != nil:
			e := errs[ru.index]
			if e == nil {
				e = &schemas.RuleError{RuleID: ru.RuleID, FirstStep: steps[o.c.Step].StepID, FirstError: judgeErrorText(o.err)}
				errs[ru.index] = e
			}
			e.Count++
		case !o.v.Aligned:
			all = append(all, placed{o.c.Step, ru.index, judgeViolation(ru, steps[o.c.Step], o.v.Reason)})
		}
	}
	slices.SortStableFunc(all, func(a, b placed) int {
		return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.rule, b.rule))
	})
	out := Result{Violations: make([]schemas.Violation, 0, len(all))}
	outAt := make([]int, 0, len(all))
	for _, p := range all {
		out.Violations = append(out.Violations, p.v)
		outAt = append(outAt, p.step)
	}
	if len(out.Violations) == 0 {
		out.Violations, outAt = nil, nil
	}
	keys := make([]int, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out.RuleErrors = append(out.RuleErrors, *errs[k])
	}
	return out, outAt
}

// judgeErrorText is the rule error of a case without an answer.
func judgeErrorText(err error) string {
	if err == errNoJudge {
		return NotJudged
	}
	return oneLine("model judge gave no answer: " + err.Error())
}

// EvaluateJudged evaluates the trace as Evaluate does, and gives every case of a judge
// rule (a step where its condition holds) to j: a step the model finds not aligned is a
// violation, with the model's reason in its details; a case without an answer is a rule
// error of the rule. With j nil the cases are rule errors saying no model judged them.
// It fails only when ctx ends.
func (c *Compiled) EvaluateJudged(ctx context.Context, t *schemas.Trace, j Judge) (Result, error) {
	r, at, cases := c.evaluate(t)
	outs, err := c.ask(ctx, j, cases, t.Steps, TraceInfoOf(t))
	if err != nil {
		return Result{}, err
	}
	r, _ = c.merge(r, at, outs, t.Steps)
	return r, nil
}

// FinishJudged gives the verdict of the trace so far as Finish does, with every case of a
// judge rule given to j, as EvaluateJudged does.
func (s *Session) FinishJudged(ctx context.Context, j Judge) (Verdict, error) {
	v, cases := s.finish()
	outs, err := s.c.ask(ctx, j, cases, s.steps, s.r.trace)
	if err != nil {
		return Verdict{}, err
	}
	v.Result, v.Steps = s.c.merge(v.Result, v.Steps, outs, s.steps)
	return v, nil
}

// HasJudge reports whether some rule of the policy has a model judge.
func (c *Compiled) HasJudge() bool {
	for _, r := range c.rules {
		if r.Judge != nil {
			return true
		}
	}
	return false
}
