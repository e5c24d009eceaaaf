package localguard_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "troy-local")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// No server: the policy is evaluated here, and every step recorded under dir.
	g, err := localguard.Open(ctx, "data_protection", localguard.Options{Session: "support-42", Agent: "support-bot", DataDir: dir})
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
