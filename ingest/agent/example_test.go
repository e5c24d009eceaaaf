package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/agent"
	"github.com/troy-audit/troy/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// deployment starts what `troyctl serve --policy data_protection` runs, on a free port, and
// returns its NATS URL.
func deployment(ctx context.Context) (string, func()) {
	b, err := bus.Open(ctx, bus.Options{Memory: true, Listen: "127.0.0.1:-1"})
	if err != nil {
		log.Fatal(err)
	}
	t, err := policies.LookupTemplate("data_protection")
	if err != nil {
		log.Fatal(err)
	}
	c, err := evaluator.Compile(t.Policy)
	if err != nil {
		log.Fatal(err)
	}
	pol := pipeline.NewPolicies(b)
	if _, err := pol.SetDefault(ctx, c); err != nil {
		log.Fatal(err)
	}
	p, err := pipeline.New(b, pol, pipeline.Config{Only: []string{pipeline.Guard}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready() // the guard answers
	return b.ClientURL(), func() { cancel(); <-done; b.Close() }
}

func ExampleGuard() {
	ctx := context.Background()
	url, stop := deployment(ctx)
	defer stop()

	conn, err := agent.Connect(ctx, bus.Options{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	g := conn.Guard(agent.GuardOptions{Session: "support-42", Agent: "support-bot"})

	// Reading a customer's profile is allowed; its result is recorded.
	d, err := g.Check(ctx, "get_customer", map[string]any{"id": "c1"}, map[string]any{"data_classification": "pii"}, schemas.StepToolCall)
	fmt.Println(d.StepID, d.Allowed, err)
	if err := g.RecordOutput(ctx, d.StepID, map[string]any{"email": "jane@example.com"}); err != nil {
		log.Fatal(err)
	}

	// Sending data out afterwards is blocked.
	_, err = g.Check(ctx, "http_post", map[string]any{"url": "https://partner.example"}, map[string]any{"network_zone": "external"}, schemas.StepToolCall)
	var blocked *agent.BlockedError
	fmt.Println(errors.As(err, &blocked), blocked.Decision.Violations[0].RuleID)

	// A guarded call runs only when allowed, and its result is recorded.
	n, err := agent.Guarded(ctx, g, "count_orders", map[string]any{"customer": "c1"}, map[string]any{"data_classification": "internal"}, func(context.Context) (int, error) { return 3, nil })
	fmt.Println(n, err)

	if err := g.End(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// step-0 true <nil>
	// true dp-pii-exfiltration-cross-step
	// 3 <nil>
}

func ExampleConn_StartTrace() {
	ctx := context.Background()
	url, stop := deployment(ctx)
	defer stop()
	conn, err := agent.Connect(ctx, bus.Options{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	tr := conn.StartTrace("run-7", "research-bot", map[string]any{"environment": "staging"}, "")
	for _, s := range []*schemas.Step{
		{StepID: "s1", Type: schemas.StepToolCall, Description: "fetch_url", Input: map[string]any{"url": "https://example.org"}},
		{StepID: "s2", Type: schemas.StepLLMCall, Description: "summarize"},
	} {
		if err := tr.Step(ctx, s); err != nil {
			log.Fatal(err)
		}
	}
	if err := tr.Output(ctx, "s1", map[string]any{"status": 200}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(tr.End(ctx))
	// Output: <nil>
}

func ExampleLocalGuard() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "troy-local")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// No server: the policy is evaluated here, and every step recorded under dir.
	g, err := agent.OpenLocalGuard(ctx, "data_protection", agent.LocalOptions{Session: "support-42", Agent: "support-bot", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close(ctx)

	d, err := g.Check(ctx, "get_customer", map[string]any{"id": "c1"}, map[string]any{"data_classification": "pii"}, schemas.StepToolCall)
	fmt.Println(d.StepID, d.Allowed, err)
	_, err = g.Check(ctx, "http_post", map[string]any{"url": "https://partner.example"}, map[string]any{"network_zone": "external"}, schemas.StepToolCall)
	var blocked *agent.BlockedError
	fmt.Println(errors.As(err, &blocked), blocked.Decision.Violations[0].RuleID)
	n, err := agent.Guarded(ctx, g, "count_orders", map[string]any{"customer": "c1"}, map[string]any{"data_classification": "internal"}, func(context.Context) (int, error) { return 3, nil })
	fmt.Println(n, err)

	rep, err := g.EndReport(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	rel, _ := filepath.Rel(dir, rep.Markdown)
	fmt.Println(rel, rep.Result.RiskScore)
	// Output:
	// step-0 true <nil>
	// true dp-pii-exfiltration-cross-step
	// 3 <nil>
	// reports/support-bot/support-42/report.md 55
}
