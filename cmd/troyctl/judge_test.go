package main

import (
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
