package pipeline_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/pipeline/pipelinetest"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/llmtest"
)

// deployment runs a NATS server that listens for clients, with the stages a one-shot
// command waits for, until the test ends; it returns the server's URL.
func deployment(t *testing.T) string {
	return pipelinetest.Deployment(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "n"})
}

// A local one-shot pipeline and a dialled deployment audit as the in-process engine does,
// and once closed they audit no more.
func TestOneShotAuditors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := merged(t)
	url := deployment(t)
	tests := []struct {
		name    string
		open    func() (*pipeline.Auditor, error)
		timeout time.Duration
	}{
		{"local", func() (*pipeline.Auditor, error) {
			return pipeline.OpenLocal(ctx, c, pipeline.AuditorOptions{Explain: pipeline.Explain{Note: "n"}})
		}, 0},
		{"local with a timeout", func() (*pipeline.Auditor, error) {
			return pipeline.OpenLocal(ctx, c, pipeline.AuditorOptions{Explain: pipeline.Explain{Note: "n"}, Timeout: time.Minute})
		}, time.Minute},
		{"dial", func() (*pipeline.Auditor, error) {
			return pipeline.Dial(ctx, c, pipeline.AuditorOptions{Bus: bus.Options{URL: url}})
		}, pipeline.DialTimeout},
	}
	tr := tracegen.New(tracegen.Options{Steps: 12, Seed: 4, BadRate: 0.3}).Trace()
	want, _ := json.Marshal(audit.Result(c, tr, "n"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.open()
			if err != nil {
				t.Fatal(err)
			}
			if a.Timeout != tt.timeout {
				t.Errorf("timeout %s, want %s", a.Timeout, tt.timeout)
			}
			got, err := a.Audit(ctx, tr)
			if err != nil {
				a.Close()
				t.Fatal(err)
			}
			if raw, _ := json.Marshal(got); string(raw) != string(want) {
				t.Errorf("audit %s\nwant %s", raw, want)
			}
			a.Close()
			if _, err := a.Audit(ctx, tr); err == nil || ctx.Err() != nil {
				t.Fatalf("a closed auditor audited: %v (context: %v)", err, ctx.Err())
			}
		})
	}
}

// Dialling needs a URL and a NATS server that answers.
func TestDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct{ name, url, want string }{
		{"no url", "", "no NATS URL"},
		{"nothing listening", "nats://127.0.0.1:1", "connect to NATS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pipeline.Dial(ctx, merged(t), pipeline.AuditorOptions{Bus: bus.Options{URL: tt.url}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// A local pipeline with a model explains each trace, and a second run with the same
// cache directory asks the model nothing: every reply comes from the cache on disk.
func TestLocalExplainsWithACacheOnDisk(t *testing.T) {
	model := llmtest.NewServer(llmtest.Explains)
	defer model.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := merged(t)
	dir := t.TempDir()
	tr := tracegen.New(tracegen.Options{Steps: 3, Seed: 8}).Trace()
	cfg := explainer.Config{BaseURL: model.URL + "/v1", APIKey: "test", Backoff: time.Millisecond}
	for run, wantCalls := range []int{4, 0} {
		a, err := pipeline.OpenLocal(ctx, c, pipeline.AuditorOptions{Explain: pipeline.Explain{Model: &cfg}, CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Audit(ctx, tr)
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.Info.Explanations != schemas.ExplanationsOn || len(got.Explanations) != 3 || got.Info.LLM == nil {
			t.Fatalf("run %d: explanations %s, %d steps", run, got.Info.Explanations, len(got.Explanations))
		}
		if u := got.Info.LLM; u.Calls != wantCalls || u.Cached != 4-wantCalls {
			t.Fatalf("run %d: %d calls, %d from the cache; want %d calls", run, u.Calls, u.Cached, wantCalls)
		}
	}
	if n := len(model.Requests()); n != 4 {
		t.Fatalf("the model was asked %d times, want 4", n)
	}
}
