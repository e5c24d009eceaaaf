package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/troy-audit/troy/sdk/llmtest"
)

// Without a model, an audit under a policy with a model judge says the judge rule was not
// evaluated, in its output and report, and exits as any audit does; with one, the model's
// "no" is a violation that counts in the score.
func TestAuditWithAJudgeRule(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("OPENAI_API_KEY", "")
	t.Setenv("OPENAI_BASE_URL", "")
	trace, policy := example(t, "traces", "unapproved-payment.json"), example(t, "judge_policy.json")
	r := troyctl(t, "audit", trace, policy, "-o", "off/report.md", "-j", "off/audit.json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "rule troy-judge-misaligned failed at") || !strings.Contains(r.stdout, "judge rule not evaluated: no model configured") ||
		!strings.Contains(r.stdout, "Found 0 violation(s). Risk score: 0/100.") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	md, err := os.ReadFile("off/report.md")
	if err != nil || !strings.Contains(string(md), "judge rule not evaluated: no model configured") {
		t.Fatalf("report.md (%v) does not say the judge did not run:\n%s", err, md)
	}

	model := scriptedModel(t, func(n int, body string, w http.ResponseWriter, req *http.Request) {
		if strings.Contains(body, "PROPOSED ACTION") {
			llmtest.Answer(w, `{"aligned": false, "reason": "the user did not ask for this"}`)
			return
		}
		llmtest.Explains(n, body, w, req)
	})
	r = troyctl(t, "audit", trace, policy, "--base-url", model.URL+"/v1", "--api-key", "test", "-o", "on/report.md", "-j", "on/audit.json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "[CRITICAL] troy-judge-misaligned at step") || !strings.Contains(r.stdout, "Risk score: 50/100.") || strings.Contains(r.stdout, "not evaluated") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	md, err = os.ReadFile("on/report.md")
	if err != nil || !strings.Contains(string(md), "the user did not ask for this") {
		t.Fatalf("report.md (%v) lacks the model's reason:\n%s", err, md)
	}
}

// `troyctl guard --stdio` with a model judges at each check: the misaligned step is
// blocked with the model's reason; without a model the rule's on_error (block) denies it.
func TestGuardStdioJudges(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "")
	t.Setenv("OPENAI_BASE_URL", "")
	t.Chdir(t.TempDir())
	model := scriptedModel(t, func(_ int, body string, w http.ResponseWriter, _ *http.Request) {
		if strings.Contains(body, "Description: send_money") {
			llmtest.Answer(w, `{"aligned": false, "reason": "the user asked for a balance"}`)
			return
		}
		llmtest.Answer(w, `{"aligned": true, "reason": "fine"}`)
	})
	policy := `{"rules": [{"rule_id": "judged", "description": "Not asked for", "condition": "step.type == 'tool_call'", "judge": {"timeout": "5s"}}]}`
	lines := strings.Join([]string{
		`{"id":1,"op":"open","policy":` + policy + `}`,
		`{"id":2,"op":"check","action":"get_balance"}`,
		`{"id":3,"op":"check","action":"send_money","input":{"amount":900}}`,
	}, "\n") + "\n"
	for _, withModel := range []bool{true, false} {
		args := []string{"guard", "--stdio", "--data-dir", t.TempDir()}
		if withModel {
			args = append(args, "--base-url", model.URL+"/v1", "--api-key", "test")
		}
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader(lines), &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		resps := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(resps) != 3 {
			t.Fatalf("responses:\n%s", out.String())
		}
		first, second := resps[1], resps[2]
		if withModel {
			if !strings.Contains(first, `"allowed":true`) || !strings.Contains(second, `"allowed":false`) || !strings.Contains(second, "the user asked for a balance") {
				t.Fatalf("with a model:\n%s\n%s", first, second)
			}
		} else if !strings.Contains(first, `"allowed":false`) || !strings.Contains(first, "model judge unavailable, step blocked (on_error: block)") {
			t.Fatalf("without a model:\n%s", first)
		}
	}
}
