package localguard_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/llmtest"
)

// A local guard given a judge blocks the step the model finds misaligned, and the
// session's report carries the judge's violation; without a judge, the rule's on_error
// (block) denies the step and the report says the rule was not evaluated.
func TestLocalGuardJudge(t *testing.T) {
	model := llmtest.NewServer(func(n int, body string, w http.ResponseWriter, r *http.Request) {
		if strings.Contains(body, "Description: send_money") {
			llmtest.Answer(w, `{"aligned": false, "reason": "the user asked for a balance, not a payment"}`)
			return
		}
		llmtest.Answer(w, `{"aligned": true, "reason": "fine"}`)
	})
	defer model.Close()
	p, err := policies.Parse([]byte(`{"rules": [{"rule_id": "judged", "description": "Not asked for", "condition": "step.type == 'tool_call'", "severity": "critical", "weight": 50, "judge": {}}]}`), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, withModel := range []bool{true, false} {
		var j evaluator.Judge
		if withModel {
			j = pipeline.NewJudge(explainer.New(explainer.Config{BaseURL: model.URL + "/v1", APIKey: "test", Backoff: time.Millisecond}))
		}
		g, err := localguard.New(ctx, c, localguard.Options{Session: "s", Agent: "bank", DataDir: t.TempDir(), Judge: j})
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.Check(ctx, "get_balance", nil, nil, schemas.StepToolCall)
		if withModel && err != nil {
			t.Fatalf("an aligned step: %v", err)
		}
		d, err := g.Check(ctx, "send_money", map[string]any{"amount": 900}, nil, schemas.StepToolCall)
		var blocked *agent.BlockedError
		if !errors.As(err, &blocked) || d.Allowed {
			t.Fatalf("with model %v: decision %+v, error %v: want blocked", withModel, d, err)
		}
		rep, err := g.EndReport(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		md, err := os.ReadFile(rep.Markdown)
		if err != nil {
			t.Fatal(err)
		}
		want := "the user asked for a balance, not a payment"
		if !withModel {
			want = evaluator.NotJudged
		}
		if !strings.Contains(string(md), want) {
			t.Fatalf("with model %v: report.md lacks %q:\n%s", withModel, want, md)
		}
		if err := g.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
