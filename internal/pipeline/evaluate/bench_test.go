package evaluate_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/internal/pipeline/evaluate"
)

// BenchmarkStageOpenTraces measures what the incremental stage holds for each open trace
// (steps received, no end yet) under the merged bundled templates: the bytes-per-trace
// metric is the live heap after a collection, divided by the traces held.
func BenchmarkStageOpenTraces(b *testing.B) {
	c, err := evaluator.Compile(evaltest.MergedPolicy(b))
	if err != nil {
		b.Fatal(err)
	}
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
				stage := evaluate.NewStage(policyFunc(c), read)
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
