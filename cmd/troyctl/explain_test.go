package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/llmtest"
)

func scriptedModel(t *testing.T, h llmtest.Handler) *llmtest.Server {
	t.Helper()
	s := llmtest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// With a model configured, the audit explains every step and the trace, writes the raw
// replies beside the report, and a second audit of the same trace asks nothing.
func TestAuditExplainsWithAModel(t *testing.T) {
	t.Chdir(t.TempDir())
	s := scriptedModel(t, llmtest.Explains)
	args := []string{"audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"),
		"--base-url", s.URL + "/v1", "--api-key", "test", "-o", "out/report.md", "-j", "out/audit.json"}
	r := troyctl(t, args...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "Explanations: on (gpt-4o-mini: 7 calls, 0 from the cache, 840 tokens).") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	md, err := os.ReadFile("out/report.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Summary", "### Key Actions", "## Step Analysis", "### Step: s1", "explains s1: a llm_call step", "### Step: s6", "**Model:** gpt-4o-mini (7 calls, 0 from the cache"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	var a schemas.AuditResult
	raw, err := os.ReadFile("out/audit.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Explanations) != 6 || a.Summary == nil || a.Summary.Overview == "" || a.Info.Explanations != "on" || a.Info.LLM == nil || a.Info.LLM.Calls != 7 {
		t.Fatalf("audit.json: %d explanations, summary %+v, info %+v", len(a.Explanations), a.Summary, a.Info)
	}
	for i, e := range a.Explanations {
		if e.StepID != a.Trace.Steps[i].StepID {
			t.Fatalf("explanation %d is of step %s, want %s", i, e.StepID, a.Trace.Steps[i].StepID)
		}
		reply, err := os.ReadFile(filepath.Join("out", "llm_responses", "step_"+e.StepID+".txt"))
		if err != nil || string(reply) != e.RawResponse {
			t.Fatalf("raw reply of %s: %v", e.StepID, err)
		}
	}
	if _, err := os.Stat(filepath.Join("out", "llm_responses", "trace_summary.txt")); err != nil {
		t.Fatal(err)
	}

	before := len(s.Requests())
	r = troyctl(t, args...)
	if r.code != 0 || len(s.Requests()) != before || !strings.Contains(r.stdout, "0 calls, 7 from the cache") {
		t.Fatalf("second audit: %d requests, exit %d:\n%s%s", len(s.Requests())-before, r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, append(args, "--json")...)
	var out struct {
		Explanations string           `json:"explanations"`
		LLM          schemas.LLMUsage `json:"llm"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Explanations != "on" || out.LLM.Cached != 7 || out.LLM.Calls != 0 {
		t.Fatalf("--json: %v %+v\n%s", err, out, r.stdout)
	}
	r = troyctl(t, append(args, "--no-cache")...)
	if r.code != 0 || len(s.Requests()) != before+7 {
		t.Fatalf("--no-cache: %d requests", len(s.Requests())-before)
	}
}

// The model's settings come from flags, then the environment, then a .env file.
func TestModelSettingsPrecedence(t *testing.T) {
	s := scriptedModel(t, llmtest.Explains)
	tests := []struct {
		name, dotenv, env string
		flags             []string
		wantModel         string
	}{
		{"dotenv", "OPENAI_BASE_URL=" + s.URL + "/v1\nOPENAI_API_KEY=test\nTROY_MODEL=from-dotenv\n", "", nil, "from-dotenv"},
		{"env over dotenv", "OPENAI_BASE_URL=" + s.URL + "/v1\nTROY_MODEL=from-dotenv\n", "from-env", nil, "from-env"},
		{"flag over env", "OPENAI_BASE_URL=" + s.URL + "/v1\n", "from-env", []string{"-m", "from-flag"}, "from-flag"},
		{"default model", "OPENAI_BASE_URL=" + s.URL + "/v1\n", "", nil, "gpt-4o-mini"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if err := os.WriteFile(".env", []byte(tt.dotenv), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.env != "" {
				t.Setenv("TROY_MODEL", tt.env)
			}
			before := len(s.Requests())
			r := troyctl(t, append([]string{"audit", example(t, "traces", "clean-run.json"), "minimal", "--no-cache"}, tt.flags...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			reqs := s.Requests()[before:]
			if len(reqs) == 0 || !strings.Contains(reqs[0], `"model":"`+tt.wantModel+`"`) {
				t.Fatalf("asked %d times, first request: %.200s", len(reqs), strings.Join(reqs, ""))
			}
		})
	}
}

// Without a key or a base URL the audit completes and says why in one line; --no-explain
// says so too.
func TestAuditWithoutAModel(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, "Explanations: off (no API key: set OPENAI_API_KEY or --api-key, or --base-url for a local model)."},
		{[]string{"--no-explain"}, "Explanations: off (--no-explain)."},
	} {
		r := troyctl(t, append([]string{"audit", example(t, "traces", "clean-run.json"), "minimal"}, tc.flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Fatalf("exit %d, stdout:\n%s", r.code, r.stdout)
		}
	}
}

// A batch's traces share the concurrency limit, and each trace gets its model replies.
func TestBatchSharesTheConcurrencyLimit(t *testing.T) {
	t.Chdir(t.TempDir())
	s := scriptedModel(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond) // requests pile up behind the limit
		llmtest.Explains(n, body, w, r)
	})
	r := troyctl(t, "batch", example(t, "traces"), example(t, "policy.json"), "-o", "out", "-q",
		"--base-url", s.URL+"/v1", "--api-key", "test", "--llm-concurrency", "2", "--no-cache")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := s.MaxInFlight(); got != 2 {
		t.Fatalf("%d requests in flight at most, want the limit of 2", got)
	}
	entries, err := filepath.Glob(filepath.Join("out", "*", "llm_responses", "trace_summary.txt"))
	if err != nil || len(entries) != 6 {
		t.Fatalf("%d traces with model replies: %v", len(entries), err)
	}
	// Explained reports are signed as the others are.
	reports, _ := filepath.Glob(filepath.Join("out", "*", "*.*"))
	if r := troyctl(t, append([]string{"verify"}, reports...)...); r.code != 0 || len(reports) != 12 {
		t.Errorf("verify %d reports: exit %d %s", len(reports), r.code, r.stderr)
	}
}

// The cache keeps replies per endpoint: the same trace audited against a second model
// server asks that server, and the report holds its text, not the first server's.
func TestCacheKeyIncludesTheEndpoint(t *testing.T) {
	t.Chdir(t.TempDir())
	answering := func(text string) llmtest.Handler {
		return func(_ int, body string, w http.ResponseWriter, _ *http.Request) {
			llmtest.Answer(w, `{"summary": "`+text+`", "rationale": "r", "alternatives": [], "risk_factors": [], "data_accessed": [], "overview": "`+text+`", "key_actions": [], "concerns": []}`)
		}
	}
	first, second := scriptedModel(t, answering("from the first server")), scriptedModel(t, answering("from the second server"))
	audit := func(s *llmtest.Server) string {
		t.Helper()
		r := troyctl(t, "audit", example(t, "traces", "clean-run.json"), "minimal", "--base-url", s.URL+"/v1", "--api-key", "test", "-o", "report.md")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		md, err := os.ReadFile("report.md")
		if err != nil {
			t.Fatal(err)
		}
		return string(md)
	}
	if md := audit(first); !strings.Contains(md, "from the first server") {
		t.Fatalf("first report:\n%s", md)
	}
	md := audit(second)
	if len(second.Requests()) == 0 || !strings.Contains(md, "from the second server") || strings.Contains(md, "from the first server") {
		t.Fatalf("second server asked %d times; report:\n%s", len(second.Requests()), md)
	}
}

// Explanations asked for from a model that fails every call: the reports are written, and
// the run exits 4 with one line naming the endpoint; a run with a call answered exits 0.
func TestEveryModelCallFailing(t *testing.T) {
	t.Chdir(t.TempDir())
	down := scriptedModel(t, func(_ int, _ string, w http.ResponseWriter, _ *http.Request) {
		llmtest.Fail(w, http.StatusBadRequest, "no such model")
	})
	up := scriptedModel(t, llmtest.Explains)
	trace := example(t, "traces", "clean-run.json")
	for _, tc := range []struct {
		name     string
		args     []string
		url      string
		wantCode int
	}{
		{"audit, all failing", []string{"audit", trace, "minimal", "-o", "a/report.md", "-j", "a/audit.json"}, down.URL + "/v1", exitModelFailed},
		{"batch, all failing", []string{"batch", trace, "minimal", "-o", "b", "-q"}, down.URL + "/v1", exitModelFailed},
		{"audit, answered", []string{"audit", trace, "minimal", "-o", "c/report.md", "-j", "c/audit.json"}, up.URL + "/v1", exitOK},
		{"batch, answered", []string{"batch", trace, "minimal", "-o", "d", "-q"}, up.URL + "/v1", exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := troyctl(t, append(tc.args, "--base-url", tc.url, "--api-key", "test", "--no-cache")...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %s", r.code, tc.wantCode, r.stderr)
			}
			if tc.wantCode == exitOK {
				return
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "troyctl: every model call to "+tc.url+" failed") {
				t.Fatalf("stderr:\n%s", r.stderr)
			}
		})
	}
	if _, err := os.Stat("a/report.md"); err != nil {
		t.Fatalf("the failed audit wrote no report: %v", err)
	}
}
