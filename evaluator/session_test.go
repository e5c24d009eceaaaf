package evaluator_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/schemas"
)

// A session fed a trace step by step, with outputs set late (after later steps, and some
// steps evaluated again), finishes with what post-hoc evaluation of the whole trace finds.
func TestSessionFinishAgreesWithPostHoc(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	g := evaltest.NewCondGen(r).WithProvenance()
	rounds := 400
	if testing.Short() || raceEnabled {
		rounds = 80
	}
	for round := range rounds {
		var conds []string
		for range 5 {
			conds = append(conds, g.Cond(2))
		}
		c, err := evaluator.Compile(evaltest.WithJudges(evaltest.PolicyOf(conds...), round))
		if err != nil {
			t.Fatal(err)
		}
		tr := evaltest.RandomTrace(r, 1+r.IntN(15))
		evaltest.AddValues(r, tr)
		s := c.NewSession(evaluator.SessionOptions{Trace: evaluator.TraceInfoOf(tr), Agent: evaluator.AgentInfoOf(tr), Lookahead: true})
		var pending []*schemas.Step
		for _, st := range tr.Steps {
			bare := *st
			bare.Output = map[string]any{}
			s.EvaluateNow(s.Append(&bare))
			pending = append(pending, st)
			for len(pending) > 0 && r.IntN(2) == 0 {
				p := pending[0]
				pending = pending[1:]
				j, ok := s.SetOutput(p.StepID, p.Output)
				if !ok {
					t.Fatalf("round %d: step %s unknown", round, p.StepID)
				}
				for i := j; i < s.Len(); i++ {
					s.EvaluateNow(i)
				}
			}
		}
		for _, p := range pending {
			j, _ := s.SetOutput(p.StepID, p.Output)
			for i := j; i < s.Len(); i++ {
				s.EvaluateNow(i)
			}
		}
		got, want := s.Finish(), c.Evaluate(tr)
		if !slices.Equal(got.Violations, want.Violations) || !evaltest.SameFailures(got.RuleErrors, want.RuleErrors) {
			t.Fatalf("round %d: session %v %+v\npost-hoc %v %+v\nconditions:\n%s", round,
				evaltest.IDs(got.Violations), got.RuleErrors, evaltest.IDs(want.Violations), want.RuleErrors, strings.Join(conds, "\n"))
		}
		for k, i := range got.Steps {
			if tr.Steps[i].StepID != got.Violations[k].StepID {
				t.Fatalf("round %d: violation %d placed at step %d (%s), found at %s", round, k, i, tr.Steps[i].StepID, got.Violations[k].StepID)
			}
		}
	}
}

// Without lookahead every rule is decided when its step is evaluated, seeing no later
// step; with it, rules that read later steps wait for Finish.
func TestSessionLookahead(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf("len(next_steps) == 0", "step.description == 'bash'", "step.metadata.missing.deeper == 1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lookahead bool
		now       []string // violations EvaluateNow found, by step
		errs      []string // rules that failed, by step
		final     []string
	}{
		{false, []string{"s0/r1 s0/r2", "s1/r1"}, []string{"r3", "r3"}, []string{"s0/r1", "s0/r2", "s1/r1"}},
		{true, []string{"s0/r2", ""}, []string{"r3", "r3"}, []string{"s0/r2", "s1/r1"}},
	} {
		t.Run(fmt.Sprint("lookahead=", tc.lookahead), func(t *testing.T) {
			s := c.NewSession(evaluator.SessionOptions{Lookahead: tc.lookahead})
			for i, desc := range []string{"bash", "read"} {
				j := s.Append(&schemas.Step{StepID: fmt.Sprint("s", i), Type: schemas.StepToolCall, Description: desc, Input: map[string]any{}, Output: map[string]any{}, Metadata: map[string]any{}})
				vs, errs := s.EvaluateNow(j)
				if got := strings.Join(evaltest.IDs(vs), " "); got != tc.now[i] {
					t.Errorf("step %d: found %q, want %q", i, got, tc.now[i])
				}
				if len(errs) != 1 || errs[0].RuleID != tc.errs[i] || errs[0].Error == "" {
					t.Errorf("step %d: rule errors %+v, want one of %s", i, errs, tc.errs[i])
				}
			}
			v := s.Finish()
			if got := evaltest.IDs(v.Violations); !slices.Equal(got, tc.final) {
				t.Errorf("verdict %v, want %v", got, tc.final)
			}
			if len(v.RuleErrors) != 1 || v.RuleErrors[0].Count != 2 || v.RuleErrors[0].FirstStep != "s0" {
				t.Errorf("rule errors %+v, want r3 twice from s0", v.RuleErrors)
			}
			if _, ok := s.SetOutput("nope", nil); ok {
				t.Error("an output for an unknown step was taken")
			}
		})
	}
}

// A guard that replays stored steps is where the guard that checked them was: the same
// steps, violations, risk and rule errors, and the next check decides the same.
func TestGuardReplay(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf(
		"step.description == 'bash'",
		"any(prev_steps, .description == 'read') and step.description == 'send'",
		"step.metadata.missing.deeper == 1",
	))
	if err != nil {
		t.Fatal(err)
	}
	checked, err := c.NewGuard(evaluator.GuardOptions{TraceID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bash", "read"} {
		if _, err := checked.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: a}}); err != nil {
			t.Fatal(err)
		}
	}
	replayed, err := c.NewGuard(evaluator.GuardOptions{TraceID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range checked.Len() {
		if err := replayed.Replay(checked.Step(i)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(evaltest.IDs(checked.Violations()), evaltest.IDs(replayed.Violations())) || !evaltest.SameFailures(checked.RuleErrors(), replayed.RuleErrors()) {
		t.Fatalf("replayed %v %+v, checked %v %+v", evaltest.IDs(replayed.Violations()), replayed.RuleErrors(), evaltest.IDs(checked.Violations()), checked.RuleErrors())
	}
	for i := range checked.Len() {
		if *checked.Step(i).Timestamp != *replayed.Step(i).Timestamp {
			t.Fatalf("step %d: time %s replayed as %s", i, *checked.Step(i).Timestamp, *replayed.Step(i).Timestamp)
		}
	}
	next := evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "send"}}
	a, errA := checked.Check(next)
	b, errB := replayed.Check(next)
	if errA != nil || errB != nil || !slices.Equal(a.Violations, b.Violations) || a.RiskScore != b.RiskScore || a.RiskScore != 20 {
		t.Fatalf("next check: %+v (%v) vs %+v (%v), want risk 20 from both", a, errA, b, errB)
	}
	for _, bad := range []struct {
		step *schemas.Step
		want string
	}{
		{checked.Step(0), `step_id "step-0" was already checked`},
		{&schemas.Step{StepID: "x", Type: "tool"}, `step type "tool" is not one of`},
	} {
		if err := replayed.Replay(bad.step); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("replay %s: got %v, want %q", bad.step.StepID, err, bad.want)
		}
	}
}
