package evaluator_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// mergedPolicy is every bundled template merged into one policy.
func mergedTemplates(tb testing.TB) *evaluator.Compiled {
	tb.Helper()
	c, err := evaluator.Compile(evaltest.MergedPolicy(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkEvaluate measures post-hoc evaluation of the merged bundled templates over
// generated traces of growing length; steps/s should not fall as traces grow.
// The seven cases merge only the Python tool's seven templates (49 rules). The provenance
// cases add a rule that reads where every step's input values came from.
func BenchmarkEvaluate(b *testing.B) {
	withProv := evaltest.MergedPolicy(b)
	withProv.Rules = append(withProv.Rules, policies.Rule{RuleID: "untrusted-destination", Description: "a value from a tool output",
		Condition: "len(untrusted(step.input)) > 0 and not from_user(get(step, 'input.to', ''))", Severity: "high", Weight: 10})
	prov, err := evaluator.Compile(withProv)
	if err != nil {
		b.Fatal(err)
	}
	seed, err := evaluator.Compile(evaltest.SeedPolicy(b))
	if err != nil {
		b.Fatal(err)
	}
	if n := len(seed.Policy().Rules); n != 49 {
		b.Fatalf("the seven templates merged hold %d rules, want 49", n)
	}
	for _, bc := range []struct {
		name   string
		c      *evaluator.Compiled
		values bool
	}{{"", mergedTemplates(b), false}, {"seven/", seed, false}, {"provenance/", prov, false}, {"provenance/values/", prov, true}} {
		benchmarkEvaluate(b, bc.name, bc.c, bc.values)
	}
}

// benchmarkEvaluate evaluates generated traces; with values, their steps also carry
// addresses, accounts and amounts, in inputs and outputs, for provenance to follow.
func benchmarkEvaluate(b *testing.B, name string, c *evaluator.Compiled, values bool) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("%ssteps=%d", name, n), func(b *testing.B) {
			g := tracegen.New(tracegen.Options{Steps: n, Seed: 1})
			traces := make([]*schemas.Trace, max(1, 20000/n))
			r := rand.New(rand.NewPCG(1, 2))
			for i := range traces {
				traces[i] = g.Trace()
				if values {
					evaltest.AddValues(r, traces[i])
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			steps := 0
			for i := 0; i < b.N; i++ {
				t := traces[i%len(traces)]
				c.Evaluate(t)
				steps += len(t.Steps)
			}
			b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps), "ns/step")
		})
	}
}

// BenchmarkGuardCheck measures one guard check after a given number of earlier checks in
// the same session; the cost should not grow with the history.
func BenchmarkGuardCheck(b *testing.B) {
	c := mergedTemplates(b)
	const refill = 1000 // checks before the session is rebuilt at its starting size
	for _, prior := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("prior=%d", prior), func(b *testing.B) {
			g := tracegen.New(tracegen.Options{Steps: prior + refill, Seed: 2})
			t := g.Trace()
			reqs := make([]evaluator.CheckRequest, len(t.Steps))
			for i, s := range t.Steps {
				reqs[i] = evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: s.Description, Input: s.Input, Metadata: s.Metadata, Type: s.Type}}
			}
			var guard *evaluator.Guard
			fresh := func() {
				var err error
				guard, err = c.NewGuard(evaluator.GuardOptions{AgentName: "bench", Mode: schemas.ModeMonitor})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range reqs[:prior] {
					if _, err := guard.Check(r); err != nil {
						b.Fatal(err)
					}
				}
			}
			fresh()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i > 0 && i%refill == 0 {
					b.StopTimer()
					fresh()
					b.StartTimer()
				}
				if _, err := guard.Check(reqs[prior+i%refill]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEvaluatePlain evaluates the same policy with every optimization off: the ratio
// to BenchmarkEvaluate is what prechecks, Go-compiled conditions, memoized quantifiers
// and regular-expression prefilters buy.
func BenchmarkEvaluatePlain(b *testing.B) {
	c, err := evaluator.CompileReference(evaltest.MergedPolicy(b))
	if err != nil {
		b.Fatal(err)
	}
	t := tracegen.New(tracegen.Options{Steps: 100, Seed: 1}).Trace()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Evaluate(t)
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "steps/s")
}

// BenchmarkCompile measures compiling every bundled template merged into one policy, which
// troyctl does at start-up.
func BenchmarkCompile(b *testing.B) {
	for i := 0; i < b.N; i++ {
		mergedTemplates(b)
	}
}

// BenchmarkLimits measures what counting time and memory costs the conditions that pay
// for it, against the same conditions compiled without the limits: a loop the evaluator
// cannot memoize (every iteration is counted), and builtins that build texts.
func BenchmarkLimits(b *testing.B) {
	t := tracegen.New(tracegen.Options{Steps: 200, Seed: 4}).Trace()
	for _, cond := range []struct{ name, cond string }{
		{"loop", "any(prev_steps, .description == step.description and .type == 'tool_call')"},
		{"builtins", "lower(step.description) + '!' == 'x!' or len(split(step.description, '_')) > 3"},
	} {
		for _, mode := range []struct {
			name    string
			compile func(*policies.Policy) (*evaluator.Compiled, error)
		}{{"limited", evaluator.Compile}, {"unlimited", evaluator.CompileUnlimited}} {
			b.Run(cond.name+"/"+mode.name, func(b *testing.B) {
				c, err := mode.compile(evaltest.PolicyOf(cond.cond))
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					c.Evaluate(t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(t.Steps)), "ns/step")
			})
		}
	}
}
