package evaluator_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// violatesEveryWay checks that a policy finds violations at the steps want lists (their
// ids, comma-separated), and no rule error, each way a trace is evaluated: optimized and
// plain, post-hoc and in an incremental session.
func violatesEveryWay(t *testing.T, p *policies.Policy, tr *schemas.Trace, want string) {
	t.Helper()
	for _, variant := range []struct {
		name    string
		compile func(*policies.Policy) (*evaluator.Compiled, error)
	}{{"optimized", evaluator.Compile}, {"plain", evaluator.CompileReference}} {
		c, err := variant.compile(p)
		if err != nil {
			t.Fatalf("%s: %v", variant.name, err)
		}
		got, errs := violating(t, c, tr)
		if strings.Join(got, ",") != want || len(errs) > 0 {
			t.Errorf("%s: violations at %v (errors %+v), want %s", variant.name, got, errs, want)
		}
		s := c.NewSession(evaluator.SessionOptions{Trace: evaluator.TraceInfoOf(tr), Agent: evaluator.AgentInfoOf(tr), Lookahead: true})
		for _, st := range tr.Steps {
			s.EvaluateNow(s.Append(st))
		}
		if v := s.Finish(); strings.Join(stepIDs(v.Violations), ",") != want {
			t.Errorf("%s: the session found %v, want %s", variant.name, stepIDs(v.Violations), want)
		}
	}
}
