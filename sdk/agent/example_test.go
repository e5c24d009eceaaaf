package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// A guarded session against a troy deployment (troyctl serve --listen :4222).
func ExampleGuard() {
	ctx := context.Background()
	conn, err := agent.Connect(ctx, agent.Options{URL: "nats://127.0.0.1:4222"})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	g := conn.Guard(agent.GuardOptions{Session: "support-42", Agent: "support-bot"})

	d, err := g.Check(ctx, "get_customer", map[string]any{"id": "c1"}, map[string]any{"data_classification": "pii"}, schemas.StepToolCall)
	if err != nil {
		var blocked *agent.BlockedError
		if errors.As(err, &blocked) {
			fmt.Println("blocked:", blocked.Decision.Violations[0].RuleID)
		}
		return
	}
	if err := g.RecordOutput(ctx, d.StepID, map[string]any{"email": "jane@example.com"}); err != nil {
		log.Fatal(err)
	}
	// A guarded call runs only when allowed, and its result is recorded.
	n, err := agent.Guarded(ctx, g, "count_orders", map[string]any{"customer": "c1"}, nil, func(context.Context) (int, error) { return 3, nil })
	fmt.Println(n, err)
	if err := g.End(ctx); err != nil {
		log.Fatal(err)
	}
}

// A trace published step by step, to be evaluated, scored and reported by the deployment.
func ExampleConn_StartTrace() {
	ctx := context.Background()
	conn, err := agent.Connect(ctx, agent.Options{URL: "nats://127.0.0.1:4222"})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tr := conn.StartTrace("run-7", "research-bot", map[string]any{"environment": "staging"}, "")
	if err := tr.Step(ctx, &schemas.Step{StepID: "s1", Type: schemas.StepToolCall, Description: "fetch_url", Input: map[string]any{"url": "https://example.org"}}); err != nil {
		log.Fatal(err)
	}
	if err := tr.Output(ctx, "s1", map[string]any{"status": 200}); err != nil {
		log.Fatal(err)
	}
	if err := tr.End(ctx); err != nil {
		log.Fatal(err)
	}
}
