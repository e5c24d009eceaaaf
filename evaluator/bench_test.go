package evaluator_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// mergedPolicy is every bundled template merged into one policy.
func mergedPolicy(tb testing.TB) *policies.Policy {
	tb.Helper()
	all, err := policies.Templates()
	if err != nil {
		tb.Fatal(err)
	}
	ps := make([]*policies.Policy, len(all))
	for i, t := range all {
		ps[i] = t.Policy
	}
	return policies.Merge("all-templates", "every bundled template", ps...)
}

// mergedTemplates compiles mergedPolicy.
func mergedTemplates(tb testing.TB) *evaluator.Compiled {
	tb.Helper()
	c, err := evaluator.Compile(mergedPolicy(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkEvaluate measures post-hoc evaluation of the merged bundled templates over
// generated traces of growing length; steps/s should not fall as traces grow.
func BenchmarkEvaluate(b *testing.B) {
	c := mergedTemplates(b)
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("steps=%d", n), func(b *testing.B) {
			g := tracegen.New(tracegen.Options{Steps: n, Seed: 1})
			traces := make([]*schemas.Trace, max(1, 20000/n))
			for i := range traces {
				traces[i] = g.Trace()
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
				reqs[i] = evaluator.CheckRequest{Action: s.Description, Input: s.Input, Metadata: s.Metadata, Type: s.Type}
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
	c, err := evaluator.CompileReference(mergedPolicy(b))
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

// BenchmarkStageOpenTraces measures what the incremental stage holds for each open trace
// (steps received, no end yet) under the merged bundled templates: the bytes-per-trace
// metric is the live heap after a collection, divided by the traces held.
func BenchmarkStageOpenTraces(b *testing.B) {
	c := mergedTemplates(b)
	for _, steps := range []int{10, 50} {
		b.Run(fmt.Sprintf("steps=%d", steps), func(b *testing.B) {
			const traces = 1000
			g := tracegen.New(tracegen.Options{Steps: steps, Seed: 3})
			var events []event.Envelope
			for i := range traces {
				tr := g.Trace()
				ref := event.TraceRef{TraceID: fmt.Sprint("open-", i), AgentName: tr.AgentName, Policy: c.Hash()}
				for j, st := range tr.Steps {
					e, err := event.New(event.Step{TraceRef: ref, TraceMetadata: tr.Metadata, Seq: j, Step: st})
					if err != nil {
						b.Fatal(err)
					}
					e.Seq = uint64(len(events) + 1)
					events = append(events, e)
				}
			}
			read := func(context.Context, string, uint64) ([]event.Envelope, error) { return nil, nil }
			var total float64
			for b.Loop() {
				before := liveHeap()
				stage := evaluator.NewStage(policyFunc(c), read)
				for _, e := range events {
					if _, err := stage.Handle(context.Background(), e); err != nil {
						b.Fatal(err)
					}
				}
				total += float64(liveHeap()-before) / traces
				if stage.OpenTraces() != traces {
					b.Fatalf("%d open traces, want %d", stage.OpenTraces(), traces)
				}
			}
			b.ReportMetric(total/float64(b.N), "bytes/trace")
			b.ReportMetric(float64(len(events))*float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
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
				c, err := mode.compile(policyOf(cond.cond))
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
