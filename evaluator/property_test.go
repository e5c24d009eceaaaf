package evaluator_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/schemas"
)

// Optimized evaluation (prechecks, memoized quantifiers, rewritten member access and
// prefiltered regular expressions) agrees with plain evaluation on thousands of random
// conditions and traces: the same violations, in the same order, and the same failures.
func TestOptimizedEvaluationAgreesWithPlain(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	g := evaltest.NewCondGen(r).WithProvenance()
	rounds := 400
	if testing.Short() || raceEnabled {
		rounds = 100
	}
	for round := range rounds {
		var conds []string
		for range 6 {
			conds = append(conds, g.Cond(3))
		}
		p := evaltest.PolicyOf(conds...)
		fast, err := evaluator.Compile(p)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		plain, err := evaluator.CompileReference(p)
		if err != nil {
			t.Fatal(err)
		}
		tr := evaltest.RandomTrace(r, 1+r.IntN(25))
		evaltest.AddValues(r, tr)
		a, b := fast.Evaluate(tr), plain.Evaluate(tr)
		if !slices.Equal(a.Violations, b.Violations) {
			t.Fatalf("round %d: violations differ\n optimized %v\n plain     %v\nconditions:\n%s", round, evaltest.IDs(a.Violations), evaltest.IDs(b.Violations), strings.Join(conds, "\n"))
		}
		if !evaltest.SameFailures(a.RuleErrors, b.RuleErrors) {
			t.Fatalf("round %d: failures differ\n optimized %+v\n plain     %+v\nconditions:\n%s", round, a.RuleErrors, b.RuleErrors, strings.Join(conds, "\n"))
		}
		compareGuards(t, fast, plain, tr, conds)
	}
}

func compareGuards(t *testing.T, fast, plain *evaluator.Compiled, tr *schemas.Trace, conds []string) {
	t.Helper()
	ga, err := fast.NewGuard(evaluator.GuardOptions{Mode: schemas.ModeMonitor, AgentMetadata: tr.Metadata})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := plain.NewGuard(evaluator.GuardOptions{Mode: schemas.ModeMonitor, AgentMetadata: tr.Metadata})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tr.Steps {
		req := evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: s.Description, Input: s.Input, Metadata: s.Metadata, Type: s.Type}, StepID: s.StepID}
		da, err := ga.Check(req)
		if err != nil {
			t.Fatal(err)
		}
		db, err := gb.Check(req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(da.Violations, db.Violations) || da.RiskScore != db.RiskScore {
			t.Fatalf("guard decisions differ at %s: %v vs %v\nconditions:\n%s", s.StepID, evaltest.IDs(da.Violations), evaltest.IDs(db.Violations), strings.Join(conds, "\n"))
		}
		if err := ga.RecordOutput(s.StepID, s.Output); err != nil {
			t.Fatal(err)
		}
		if err := gb.RecordOutput(s.StepID, s.Output); err != nil {
			t.Fatal(err)
		}
	}
	if !evaltest.SameFailures(ga.RuleErrors(), gb.RuleErrors()) {
		t.Fatalf("guard failures differ: %+v vs %+v\nconditions:\n%s", ga.RuleErrors(), gb.RuleErrors(), strings.Join(conds, "\n"))
	}
}

// Templates merged into one policy agree with plain evaluation on generated traces.
func TestMergedTemplatesAgreeWithPlain(t *testing.T) {
	p := evaltest.MergedPolicy(t)
	fast, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := evaluator.CompileReference(p)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	total, traces := 0, 30
	if testing.Short() || raceEnabled {
		traces = 3
	}
	for range traces {
		tr := evaltest.RandomTrace(r, 60)
		a, b := fast.Evaluate(tr), plain.Evaluate(tr)
		if !slices.Equal(a.Violations, b.Violations) || !evaltest.SameFailures(a.RuleErrors, b.RuleErrors) {
			t.Fatalf("differ:\n%v\n%v\n%+v\n%+v", evaltest.IDs(a.Violations), evaltest.IDs(b.Violations), a.RuleErrors, b.RuleErrors)
		}
		total += len(a.Violations)
	}
	if total == 0 {
		t.Fatal("the traces should violate something")
	}
}
