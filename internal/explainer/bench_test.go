package explainer_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/llmtest"
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
	if _, err := explainer.NewRedactor(); err != nil { // the rules compile once per process
		b.Fatal(err)
	}
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

// BenchmarkRedactHostileText redacts 64 KB texts built to make a redactor work hard: long
// runs of digit groups (card and phone windows), chained names (a:b:c …), encodings inside
// encodings, deep JSON in a string. The cost per byte stays within a few times that of
// ordinary text.
func BenchmarkRedactHostileText(b *testing.B) {
	const size = 64 << 10
	fill := func(unit string) string { return strings.Repeat(unit, size/len(unit)) }
	texts := []struct{ name, text string }{
		{"ordinary", fill("the customer asked for a refund because the shipment was delayed; ")},
		{"digit groups", fill("1 ")},
		{"phone-like", fill("+1 415 555 2671 ")},
		{"names", fill("a:")},
		{"assignments", fill("password=")},
		{"percent", fill("%41")},
		{"base64", fill("QUFBQUFBQUFBQUFB")},
		{"nested JSON", strings.Repeat(`{"a":`, size/10) + "1" + strings.Repeat("}", size/10)},
		{"PEM headers", fill("-----BEGIN PRIVATE KEY-----")},
	}
	if _, err := explainer.NewRedactor(); err != nil {
		b.Fatal(err)
	}
	for _, tt := range texts {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				r, _ := explainer.NewRedactor()
				r.String(tt.text)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(tt.text)), "ns/byte")
		})
	}
}
