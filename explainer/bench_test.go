package explainer_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/explainer"
	"github.com/troy-audit/troy/explainer/llmtest"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
)

// BenchmarkBatchAgainstSlowModel explains a batch of 100 traces of 5 steps (600 calls)
// against a model that takes 200 ms per answer, the traces all at once as a batch sends
// them. The ideal is calls × 200 ms / concurrency; x_ideal is the time taken over that.
func BenchmarkBatchAgainstSlowModel(b *testing.B) {
	const delay = 200 * time.Millisecond
	s := llmtest.NewServer(func(n int, body string, w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		llmtest.Explains(n, body, w, r)
	})
	defer s.Close()
	g := tracegen.New(tracegen.Options{Steps: 5, Seed: 1})
	traces := make([]*schemas.Trace, 100)
	for i := range traces {
		traces[i] = g.Trace()
	}
	for _, conc := range []int{5, 20} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			calls := 0
			for b.Loop() {
				e := explainer.New(explainer.Config{BaseURL: s.URL + "/v1", APIKey: "test", Concurrency: conc})
				var wg sync.WaitGroup
				var mu sync.Mutex
				calls = 0
				for _, t := range traces {
					wg.Go(func() {
						r, err := e.Explain(context.Background(), t)
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						calls += r.Usage.Calls
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			ideal := time.Duration(calls) * delay / time.Duration(conc)
			b.ReportMetric(float64(calls), "calls")
			b.ReportMetric(ideal.Seconds(), "ideal_s")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/ideal.Seconds(), "x_ideal")
		})
	}
}

// BenchmarkRedactStep redacts generated steps (about 1 KB of input and output JSON each,
// a few percent carrying personal data) as the explainer does before asking the model:
// one redactor per trace, every text and value of every step.
func BenchmarkRedactStep(b *testing.B) {
	const steps = 1000
	t := tracegen.New(tracegen.Options{Steps: steps, Seed: 1}).Trace()
	for b.Loop() {
		r, err := explainer.NewRedactor()
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range t.Steps {
			r.String(s.Description)
			r.Value(s.Input)
			r.Value(s.Output)
			r.Value(s.Metadata)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
}
