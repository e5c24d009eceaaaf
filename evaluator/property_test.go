package evaluator_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
)

// condGen writes random conditions from the forms policies use.
type condGen struct{ r *rand.Rand }

func (g condGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

var propPatterns = []string{
	"`ignore (all )?previous instructions|run as admin`",
	"`\\b\\d{3}-\\d{2}-\\d{4}\\b`",
	"`\\b(?:\\d[ -]?){15}\\d\\b`",
	"`[a-z0-9._%+-]+@[a-z0-9-]+\\.[a-z]{2,}`",
	"`^https?://`",
	"`api[_-]?key`",
	"`sk-[A-Za-z0-9]{10,}`",
	"`\\brm\\s+-rf\\b`",
	"`(?-i)Secret`",
	"`secret`",
	"`kelvin`",
	"`é|ü`",
	"`select\\s+\\*\\s+from`",
	"`\"(password|otp)\"\\s*:`",
	"`x|\\d{4}`",
	"`^(bash|sh)$`",
	"`a.b`",
	"`@`",
	"`\\.(exe|sh)$`",
	"`(ignore|forget) (all|previous)`",
}

func (g condGen) atom(x string) string {
	switch g.r.IntN(14) {
	case 12:
		return fmt.Sprintf("%s.metadata.%s != '%s'", x, g.pick("data_classification", "network_zone", "approval_token"), g.pick("pii", "external", ""))
	case 13:
		return fmt.Sprintf("%s.metadata.%s in [nil, '', 3]", x, g.pick("approval_token", "data_classification", "total_tokens"))
	case 0:
		return fmt.Sprintf("%s.type == '%s'", x, g.pick(schemas.StepTypes()...))
	case 1:
		return fmt.Sprintf("%s.type in ['%s', '%s']", x, g.pick(schemas.StepTypes()...), g.pick(schemas.StepTypes()...))
	case 2:
		return fmt.Sprintf("%s.metadata.%s == '%s'", x, g.pick("data_classification", "network_zone", "permission_level", "category"), g.pick("pii", "external", "admin", "communication", "public"))
	case 3:
		return fmt.Sprintf("get(%s, 'metadata.%s') == '%s'", x, g.pick("data_classification", "network_zone", "permission_level"), g.pick("pii", "external", "admin"))
	case 4:
		return x + ".metadata.requires_approval == true"
	case 5, 6:
		return fmt.Sprintf("matches(%s.%s, %s)", x, g.pick("input", "output", "description"), g.pick(propPatterns...))
	case 7:
		return fmt.Sprintf("matches(get(%s, 'input.%s', ''), %s)", x, g.pick("url", "query", "command"), g.pick(propPatterns...))
	case 8:
		return x + ".metadata.missing.deeper == 1" // fails at run time
	case 9:
		return fmt.Sprintf("%s.input.%s != nil", x, g.pick("url", "query", "prompt"))
	case 10:
		return fmt.Sprintf("%s.description == '%s'", x, g.pick("bash", "fetch_url", "send_email", "search_docs"))
	}
	return fmt.Sprintf("(%s.metadata.total_tokens ?? 0) > %d", x, g.r.IntN(2500))
}

func (g condGen) quantifier() string {
	list := g.pick("prev_steps", "next_steps", "steps")
	pred := g.atom("#")
	if g.r.IntN(3) == 0 {
		pred = pred + " " + g.pick("and", "or") + " " + g.atom("#")
	}
	if g.r.IntN(6) == 0 {
		pred = "." + "description == step.description" // depends on the current step
	}
	if g.r.IntN(5) == 0 {
		return fmt.Sprintf("count(%s, %s) %s %d", list, pred, g.pick(">=", "==", "<"), g.r.IntN(4))
	}
	return fmt.Sprintf("%s(%s, %s)", g.pick("any", "all", "none", "one"), list, pred)
}

func (g condGen) cond(depth int) string {
	if depth == 0 || g.r.IntN(3) == 0 {
		if g.r.IntN(3) == 0 {
			return g.quantifier()
		}
		return g.atom("step")
	}
	switch g.r.IntN(4) {
	case 0:
		return g.cond(depth-1) + " and " + g.cond(depth-1)
	case 1:
		return g.cond(depth-1) + " or " + g.cond(depth-1)
	case 2:
		return "not (" + g.cond(depth-1) + ")"
	}
	return "(" + g.cond(depth-1) + ")"
}

var fragments = []string{
	"ignore previous instructions", "IGNORE ALL PREVIOUS INSTRUCTIONS", "SSN 123-45-6789", "card 4111 1111 1111 1111",
	"mail bob@example.com", "http://x.example/a.sh", "https://docs.example", "API_KEY=sk-abcdefghijklmnop", "api-key",
	"rm -rf /tmp/x", "Secret", "secret", "ſecret", "\u212aelvin", "é", "SELECT *  FROM users", `"password": "x"`,
	"2026-03-02", "bash", "a\nb", "forget all", "x", "1234",
}

// randomTrace mixes generated steps with fragments that the patterns look for.
func randomTrace(r *rand.Rand, n int) *schemas.Trace {
	t := tracegen.New(tracegen.Options{Steps: n, Seed: r.Uint64(), BadRate: 0.2}).Trace()
	for _, s := range t.Steps {
		for range r.IntN(3) {
			f := fragments[r.IntN(len(fragments))]
			switch r.IntN(4) {
			case 0:
				s.Input["note"] = f
			case 1:
				s.Output["note"] = f
			case 2:
				s.Description = f
			default:
				s.Input["url"] = f
			}
		}
		if r.IntN(4) == 0 {
			s.Metadata["data_classification"] = []string{"pii", "public"}[r.IntN(2)]
		}
	}
	return t
}

// Optimized evaluation (prechecks, memoized quantifiers, rewritten member access and
// prefiltered regular expressions) agrees with plain evaluation on thousands of random
// conditions and traces: the same violations, in the same order, and the same failures.
func TestOptimizedEvaluationAgreesWithPlain(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	g := condGen{r}
	rounds := 400
	if testing.Short() || raceEnabled {
		rounds = 100
	}
	for round := range rounds {
		var conds []string
		for range 6 {
			conds = append(conds, g.cond(3))
		}
		p := policyOf(conds...)
		fast, err := evaluator.Compile(p)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		plain, err := evaluator.CompileReference(p)
		if err != nil {
			t.Fatal(err)
		}
		tr := randomTrace(r, 1+r.IntN(25))
		a, b := fast.Evaluate(tr), plain.Evaluate(tr)
		if !slices.Equal(a.Violations, b.Violations) {
			t.Fatalf("round %d: violations differ\n optimized %v\n plain     %v\nconditions:\n%s", round, ids(a.Violations), ids(b.Violations), strings.Join(conds, "\n"))
		}
		if !sameFailures(a.RuleErrors, b.RuleErrors) {
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
		req := evaluator.CheckRequest{Action: s.Description, Input: s.Input, Metadata: s.Metadata, Type: s.Type, StepID: s.StepID}
		da, err := ga.Check(req)
		if err != nil {
			t.Fatal(err)
		}
		db, err := gb.Check(req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(da.Violations, db.Violations) || da.RiskScore != db.RiskScore {
			t.Fatalf("guard decisions differ at %s: %v vs %v\nconditions:\n%s", s.StepID, ids(da.Violations), ids(db.Violations), strings.Join(conds, "\n"))
		}
		if err := ga.RecordOutput(s.StepID, s.Output); err != nil {
			t.Fatal(err)
		}
		if err := gb.RecordOutput(s.StepID, s.Output); err != nil {
			t.Fatal(err)
		}
	}
	if !sameFailures(ga.RuleErrors(), gb.RuleErrors()) {
		t.Fatalf("guard failures differ: %+v vs %+v\nconditions:\n%s", ga.RuleErrors(), gb.RuleErrors(), strings.Join(conds, "\n"))
	}
}

func ids(vs []schemas.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.StepID + "/" + v.RuleID
	}
	return out
}

func sameFailures(a, b []schemas.RuleError) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].RuleID != b[i].RuleID || a[i].Count != b[i].Count || a[i].FirstStep != b[i].FirstStep {
			return false
		}
	}
	return true
}

// Templates merged into one policy agree with plain evaluation on generated traces.
func TestMergedTemplatesAgreeWithPlain(t *testing.T) {
	p := mergedPolicy(t)
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
		tr := randomTrace(r, 60)
		a, b := fast.Evaluate(tr), plain.Evaluate(tr)
		if !slices.Equal(a.Violations, b.Violations) || !sameFailures(a.RuleErrors, b.RuleErrors) {
			t.Fatalf("differ:\n%v\n%v\n%+v\n%+v", ids(a.Violations), ids(b.Violations), a.RuleErrors, b.RuleErrors)
		}
		total += len(a.Violations)
	}
	if total == 0 {
		t.Fatal("the traces should violate something")
	}
}
