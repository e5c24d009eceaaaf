package pipeline_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
)

// blockConsumer makes a component's consumer impossible to create, as an operator's
// mistake or another version of troy could: a durable of the same name with another ack
// policy, which the server refuses to change. It returns the undo.
func blockConsumer(t *testing.T, b *bus.Bus, stream, name string) (undo func()) {
	t.Helper()
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteConsumer(ctx, stream, name); err != nil {
			t.Fatal(err)
		}
	}
}

type healthz struct {
	code       int
	Status     string                              `json:"status"`
	Problems   []string                            `json:"problems"`
	Components map[string]pipeline.ComponentHealth `json:"components"`
}

func getHealth(t *testing.T, url string) healthz {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := healthz{code: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A component that fails is restarted with backoff; meanwhile /healthz is 503 and names it
// with its error; once it runs again, /healthz is ok.
func TestFailedComponentIsRestartedAndShownInHealth(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unblock := blockConsumer(t, b, bus.ResultsStream, pipeline.Explainer)
	srv, err := pipeline.NewServer(b, pipeline.ServeConfig{
		Config: pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer},
			Restart: pipeline.Restart{MaxRestarts: 1000, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}},
		Policy:      "minimal",
		MetricsAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	waitHealth := func(what string, cond func(healthz) bool) healthz {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			h := getHealth(t, srv.MetricsURL())
			if cond(h) {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /healthz %d %+v", what, h.code, h)
			}
			time.Sleep(10 * time.Millisecond) // polling the endpoint, bounded by the deadline
		}
	}
	h := waitHealth("the explainer shown failing", func(h healthz) bool {
		return h.code == http.StatusServiceUnavailable && h.Components[pipeline.Explainer].Restarts > 1
	})
	sc := h.Components[pipeline.Explainer]
	if h.Status != "not ok" || sc.OK() || !strings.Contains(sc.Error, "ack policy can not be updated") || h.Components[pipeline.Evaluator].State != pipeline.StateRunning {
		t.Fatalf("while the explainer fails: %+v", h)
	}
	if len(h.Problems) != 1 || !strings.HasPrefix(h.Problems[0], "explainer: ") || !strings.Contains(h.Problems[0], "ack policy can not be updated") {
		t.Fatalf("problems: %q", h.Problems)
	}
	if m := scrape(t, srv.MetricsURL()+"/metrics"); !strings.Contains(m, `troy_component_up{component="evaluator"} 1`) || strings.Contains(m, `troy_component_restarts_total{component="explainer"} 0`) {
		t.Fatalf("metrics while the explainer fails:\n%s", m)
	}

	unblock()
	h = waitHealth("the explainer back", func(h healthz) bool { return h.code == http.StatusOK })
	if h.Status != "ok" || h.Components[pipeline.Explainer].State != pipeline.StateRunning || len(h.Problems) != 0 {
		t.Fatalf("once the explainer runs: %+v", h)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a pipeline whose components all run stopped with %v", err)
	}
}

// A component that fails more often than the policy allows stops the whole pipeline, and
// Run returns its error.
func TestComponentFailingTooOftenStopsThePipeline(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	blockConsumer(t, b, bus.ResultsStream, pipeline.Reporter)
	pol := pipeline.NewPolicies(b)
	p, err := pipeline.New(b, pol, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Reporter, pipeline.Guard}, ReportDir: t.TempDir(),
		Restart: pipeline.Restart{MaxRestarts: 2, Backoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("the pipeline ran on with a component that cannot start")
	}
	if err == nil || !strings.HasPrefix(err.Error(), "component reporter stopped the pipeline: 3 failures within 5m0s, 2 restarts allowed; the last: consumer reporter: ") {
		t.Fatalf("Run: %v", err)
	}
	for name, h := range p.Health() {
		want := pipeline.StateStopped
		if name == pipeline.Reporter {
			want = pipeline.StateFailed
		}
		if h.State != want {
			t.Errorf("%s: %+v, want %s", name, h, want)
		}
	}
}
