package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// sdkDeployment starts what `troyctl serve --policy data_protection` runs, on a free port, and
// returns its NATS URL.
func sdkDeployment(ctx context.Context, t *testing.T) (string, func()) {
	t.Helper()
	b, stop := guardDeployment(ctx, t, bus.Options{Memory: true, Listen: "127.0.0.1:-1"}, "data_protection")
	return b.ClientURL(), stop
}

// guardDeployment starts the guard service on a bus opened with opts, with a bundled
// template as the default policy; stop stops both.
func guardDeployment(ctx context.Context, tb testing.TB, opts bus.Options, template string) (b *bus.Bus, stop func()) {
	tb.Helper()
	b, err := bus.Open(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tp, err := policies.LookupTemplate(template)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := evaluator.Compile(tp.Policy)
	if err != nil {
		tb.Fatal(err)
	}
	pol := pipeline.NewPolicies(b)
	if _, err := pol.SetDefault(ctx, c); err != nil {
		tb.Fatal(err)
	}
	p, err := pipeline.New(b, pol, pipeline.Config{Only: []string{pipeline.Guard}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready() // the guard answers
	return b, func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
		b.Close()
	}
}

// The SDK against a deployment: a guarded session whose second step is blocked, and a
// guarded call.
func TestSDKGuard(t *testing.T) {
	var out strings.Builder
	println := func(a ...any) { fmt.Fprintln(&out, a...) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, stop := sdkDeployment(ctx, t)
	defer stop()

	conn, err := agent.Connect(ctx, agent.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := conn.Guard(agent.GuardOptions{Session: "support-42", Agent: "support-bot"})

	// Reading a customer's profile is allowed; its result is recorded.
	d, err := g.Check(ctx, "get_customer", map[string]any{"id": "c1"}, map[string]any{"data_classification": "pii"}, schemas.StepToolCall)
	println(d.StepID, d.Allowed, err)
	if err := g.RecordOutput(ctx, d.StepID, map[string]any{"email": "jane@example.com"}); err != nil {
		t.Fatal(err)
	}

	// Sending data out afterwards is blocked.
	_, err = g.Check(ctx, "http_post", map[string]any{"url": "https://partner.example"}, map[string]any{"network_zone": "external"}, schemas.StepToolCall)
	var blocked *agent.BlockedError
	println(errors.As(err, &blocked), blocked.Decision.Violations[0].RuleID)

	// A guarded call runs only when allowed, and its result is recorded.
	n, err := agent.Guarded(ctx, g, "count_orders", map[string]any{"customer": "c1"}, map[string]any{"data_classification": "internal"}, func(context.Context) (int, error) { return 3, nil })
	println(n, err)

	if err := g.End(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "step-0 true <nil>\ntrue dp-pii-exfiltration-cross-step\n3 <nil>\n"; out.String() != want {
		t.Fatalf("got\n%swant\n%s", out.String(), want)
	}
}

// The SDK against a deployment: a published trace.
func TestSDKTrace(t *testing.T) {
	var out strings.Builder
	println := func(a ...any) { fmt.Fprintln(&out, a...) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, stop := sdkDeployment(ctx, t)
	defer stop()
	conn, err := agent.Connect(ctx, agent.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	tr := conn.StartTrace("run-7", "research-bot", map[string]any{"environment": "staging"}, "")
	for _, s := range []*schemas.Step{
		{StepID: "s1", Type: schemas.StepToolCall, Description: "fetch_url", Input: map[string]any{"url": "https://example.org"}},
		{StepID: "s2", Type: schemas.StepLLMCall, Description: "summarize"},
	} {
		if err := tr.Step(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Output(ctx, "s1", map[string]any{"status": 200}); err != nil {
		t.Fatal(err)
	}
	println(tr.End(ctx))
	if out.String() != "<nil>\n" {
		t.Fatalf("end: %s", out.String())
	}
}
