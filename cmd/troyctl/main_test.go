package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/schemas"
)

// repoRoot is the repository root, for the examples; tests change directory.
var repoRoot string

func TestMain(m *testing.M) {
	abs, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	repoRoot = abs
	// Tests never reach a real model or database: settings in the developer's environment are not used.
	for _, k := range []string{"OPENAI_API_KEY", "OPENAI_BASE_URL", "TROY_MODEL", "TROY_CLICKHOUSE"} {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}

func repo(*testing.T) string { return repoRoot }

type result struct {
	code           int
	stdout, stderr string
}

// troyctl runs a command line in process, in a fresh working directory.
func troyctl(t testing.TB, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func example(t *testing.T, parts ...string) string {
	return filepath.Join(append([]string{repo(t), "examples"}, parts...)...)
}

func TestAuditExample(t *testing.T) {
	t.Chdir(t.TempDir())
	r := troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "Found 1 violation(s). Risk score: 50/100.") || !strings.Contains(r.stdout, "[CRITICAL] pii-exfiltration-protection at step s2") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	dir := filepath.Join("logs", time.Now().Format("2006-01-02"))
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "# Audit Report: support-assistant") || !strings.Contains(string(md), "**Explanations:** off") {
		t.Fatalf("report.md:\n%s", md)
	}
	var a schemas.AuditResult
	raw, err := os.ReadFile(filepath.Join(dir, "audit.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &a); err != nil || a.RiskScore != 50 || len(a.Trace.Steps) != 6 {
		t.Fatalf("audit.json: %v %+v", err, a)
	}
}

func TestAuditPathsJSONAndTemplates(t *testing.T) {
	t.Chdir(t.TempDir())
	r := troyctl(t, "audit", example(t, "traces", "prompt-injection.json"), "owasp_llm_top10", "-o", "out/r.md", "-j", "out/a.json", "--json", "--no-explain")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		TraceID    string              `json:"trace_id"`
		RiskScore  int                 `json:"risk_score"`
		Violations []schemas.Violation `json:"violations"`
		Report     string              `json:"report"`
		AuditJSON  string              `json:"audit_json"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	if out.TraceID != "research-22c1" || out.RiskScore == 0 || out.Report != "out/r.md" || out.AuditJSON != "out/a.json" {
		t.Fatalf("%+v", out)
	}
	for _, f := range []string{"out/r.md", "out/a.json"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	raw, _ := os.ReadFile("out/a.json")
	if !strings.Contains(string(raw), `"explanations_note": "--no-explain"`) {
		t.Errorf("audit.json should say why there are no explanations")
	}
}

// Each malformed input gets one line naming the file and the place, and exit code 1.
func TestBadInputsExitOneWithOneLine(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := example(t, "policy.json")
	badType := write("run.json", `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "llm_call", "description": "d"}, {"step_id": "s2", "type": "llm_call", "description": "d"}, {"step_id": "s3", "type": "llm_call", "description": "d"}, {"step_id": "s4", "type": "tool", "description": "d"}]}`)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad step type", []string{"audit", badType, policy}, `run.json: steps[3].type: "tool" is not one of llm_call, tool_call, decision, observation`},
		{"missing field", []string{"audit", write("m.json", `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "llm_call"}]}`), policy}, `m.json: steps[0].description: required field is missing`},
		{"wrong type", []string{"audit", write("w.json", `{"trace_id": "t", "agent_name": 7, "steps": []}`), policy}, `w.json: agent_name: expected a string, got number 7`},
		{"empty steps", []string{"audit", write("e.json", `{"trace_id": "t", "agent_name": "a", "steps": []}`), policy}, `e.json: steps: expected at least one step, got none`},
		{"invalid UTF-8", []string{"audit", write("u.json", "{\"trace_id\": \"\xc3\x28\"}"), policy}, `u.json:1:15: invalid UTF-8`},
		{"too large", []string{"audit", badType, policy, "--max-size", "50"}, `run.json: file is`},
		{"invalid JSON", []string{"audit", write("j.json", "{\n\"trace_id\": }"), policy}, `j.json:2:13: invalid JSON`},
		{"missing file", []string{"audit", "nope.json", policy}, `nope.json: no such file or directory`},
		{"bad policy", []string{"audit", badType, write("p.json", `{"rules": [{"rule_id": "r", "description": "d", "condition": "step.typ == 1"}]}`)}, `p.json: rule "r": condition: line 1, column 6: type evaluator.stepView has no field typ`},
		{"unknown template", []string{"audit", badType, "hippa"}, `hippa: no such file, and no bundled template of that name`},
		{"check bad input JSON", []string{"check", policy, "-a", "x", "-i", "{nope"}, `--input: invalid JSON`},
		{"check input not object", []string{"check", policy, "-a", "x", "-i", "[1]"}, `--input: expected a JSON object`},
		{"check bad mode", []string{"check", policy, "-a", "x", "--mode", "block"}, `invalid guard mode "block"`},
		{"check bad type", []string{"check", policy, "-a", "x", "-t", "tool"}, `step type "tool" is not one of`},
		{"serve retention too short", []string{"serve", "--retain", "10m"}, `--retain "10m": expected a duration of at least 1h, such as 720h, or unlimited`},
		{"serve retention size", []string{"serve", "--retain-bytes", "lots"}, `--retain-bytes "lots": expected a size of at least 1MB`},
		{"check without action", []string{"check", policy}, `required flag(s) "action" not set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := troyctl(t, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr %s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.HasPrefix(lines[0], "troyctl: ") {
				t.Fatalf("stderr %q, want one line containing %q", r.stderr, tc.want)
			}
		})
	}
}

func TestCheckExitCodes(t *testing.T) {
	policy := example(t, "policy.json")
	r := troyctl(t, "check", policy, "-a", "bash", "--metadata", `{"permission_level": "admin"}`)
	if r.code != 2 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out checkOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Allowed || out.Mode != "enforce" || len(out.Violations) != 1 || out.Violations[0].RuleID != "privileged-escalation-guard" || out.RiskScore != 50 || out.StepID != "step-0" {
		t.Fatalf("%+v", out)
	}
	if r := troyctl(t, "check", policy, "-a", "search", "-i", `{"q": "weather in Paris"}`); r.code != 0 || !strings.Contains(r.stdout, `"allowed": true`) {
		t.Fatalf("a harmless action is allowed: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := troyctl(t, "check", policy, "-a", "search", "-i", `{"query": "SELECT * FROM users"}`, "--mode", "monitor"); r.code != 0 || !strings.Contains(r.stdout, "secure-db-access") {
		t.Fatalf("monitor mode reports but allows: %d %s", r.code, r.stdout)
	}
	if r := troyctl(t, "check", policy, "-a", "delete", "--metadata", `{"permission_level": "admin"}`, "--agent-metadata", `{"permission_level": "admin"}`); r.code != 0 {
		t.Fatalf("an admin agent may use admin tools: %d %s", r.code, r.stdout)
	}
}

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := troyctl(t, "batch", example(t, "traces"), example(t, "policy.json"), "-o", "out", "--concurrency", "3")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "Batch complete: 6 processed, 0 skipped.") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	// Not a terminal: one plain line per trace on stderr.
	if n := strings.Count(r.stderr, "violation(s), risk"); n != 6 {
		t.Fatalf("progress lines:\n%s", r.stderr)
	}
	for _, f := range []string{"out/summary.md", "out/batch.json", "out/clean-run/report.md", "out/unapproved-payment/audit.json"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	// A bad file among good ones: the good ones are reported, the bad one is listed, and the
	// exit code says something was skipped.
	mixed := filepath.Join(dir, "mixed")
	if err := os.MkdirAll(mixed, 0o755); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(example(t, "traces", "clean-run.json"))
	os.WriteFile(filepath.Join(mixed, "good.json"), good, 0o644)
	os.WriteFile(filepath.Join(mixed, "bad.json"), []byte(`{"trace_id": "x"}`), 0o644)
	r = troyctl(t, "audit-batch", mixed, "minimal", "-o", "out2", "--json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 when inputs were skipped", r.code)
	}
	var sum struct {
		Results []struct {
			TraceID string `json:"trace_id"`
		} `json:"results"`
		Skipped []schemas.SkippedFile `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(sum.Results) != 1 || sum.Results[0].TraceID != "docs-0a42" || len(sum.Skipped) != 1 || sum.Skipped[0].File != "bad.json" {
		t.Fatalf("%+v", sum)
	}
	if !strings.Contains(r.stderr, "bad.json: skipped: ") || !strings.Contains(r.stderr, "1 input(s) skipped") {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
}

func TestPoliciesCommands(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := troyctl(t, "policies", "list")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 7 || !strings.Contains(r.stdout, "  hipaa  ") {
		t.Fatalf("list: %d\n%s", r.code, r.stdout)
	}
	r = troyctl(t, "policies", "list", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 7 {
		t.Fatalf("list --json: %v %s", err, r.stdout)
	}
	r = troyctl(t, "policies", "show", "soc2")
	if r.code != 0 || !strings.Contains(r.stdout, "soc2-cc7-log-tampering") || !strings.Contains(r.stdout, "rules total") {
		t.Fatalf("show:\n%s", r.stdout)
	}
	if r := troyctl(t, "policies", "copy", "hipaa", "-o", "mine.json"); r.code != 0 {
		t.Fatalf("copy: %s", r.stderr)
	}
	raw, _ := os.ReadFile("mine.json")
	tmpl, _ := os.ReadFile(filepath.Join(repo(t), "policies", "templates", "hipaa.json"))
	if !bytes.Equal(raw, tmpl) {
		t.Fatalf("copy writes the template as shipped")
	}
	if r := troyctl(t, "policies", "copy", "hipaa", "-o", "mine.json"); r.code != 1 || !strings.Contains(r.stderr, "mine.json already exists; use --force to overwrite it") {
		t.Fatalf("copy must not overwrite silently: %d %s", r.code, r.stderr)
	}
	if r := troyctl(t, "policies", "copy", "soc2", "-o", "mine.json", "--force"); r.code != 0 {
		t.Fatalf("--force overwrites: %s", r.stderr)
	}
	r = troyctl(t, "policies", "init", "-t", "soc2", "-t", "agent_safety", "-o", "policy.json")
	if r.code != 0 || !strings.Contains(r.stdout, "Created policy.json with 13 rules from 2 template(s)") {
		t.Fatalf("init: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := troyctl(t, "policies", "init", "-o", "policy.json"); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("init must not overwrite silently: %s", r.stderr)
	}
	r = troyctl(t, "policies", "validate", "policy.json", "mine.json")
	if r.code != 0 || !strings.Contains(r.stdout, "policy.json: ok (13 rules)") {
		t.Fatalf("validate: %d %s %s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile("broken.json", []byte(`{"rules": [{"rule_id": "a", "description": "", "condition": "x =="}, {"rule_id": "b", "description": "", "condition": "true", "severity": "extreme"}, {"rule_id": "c", "description": ""}]}`), 0o644)
	r = troyctl(t, "policies", "validate", "broken.json", "policy.json")
	if r.code != 1 || !strings.Contains(r.stderr, `broken.json: rule "b": severity: "extreme" is not one of`) || !strings.Contains(r.stderr, `broken.json: rule "c": condition: required field is missing`) {
		t.Fatalf("validate reports every problem of a file, one per line: %d %s", r.code, r.stderr)
	}
	os.WriteFile("broken.json", []byte(`{"rules": [{"rule_id": "a", "description": "", "condition": "x =="}, {"rule_id": "b", "description": "", "condition": "nope(1)"}]}`), 0o644)
	r = troyctl(t, "policies", "validate", "broken.json")
	if r.code != 1 || !strings.Contains(r.stderr, `broken.json: rule "a": condition: line 1, column 4: unexpected token EOF`) || !strings.Contains(r.stderr, `broken.json: rule "b": condition: line 1, column 1: unknown name nope`) {
		t.Fatalf("validate broken conditions: %d %s", r.code, r.stderr)
	}
	// A merged policy audits like its templates.
	if r := troyctl(t, "audit", example(t, "traces", "privilege-escalation.json"), "policy.json", "-o", "r.md", "-j", "a.json"); r.code != 0 || !strings.Contains(r.stdout, "soc2-cc6-privilege-escalation") {
		t.Fatalf("audit with the merged policy: %s %s", r.stdout, r.stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if r := troyctl(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "troyctl ") {
		t.Fatalf("version: %+v", r)
	}
	// Every command explains itself with an example.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Name() != "help" && c.Name() != "completion" && c.Example == "" {
			t.Errorf("%s has no example in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&app{}))
	if r := troyctl(t, "audit", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Fatalf("audit --help: %s", r.stdout)
	}
}
