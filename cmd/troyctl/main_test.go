package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/policies"
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
	for _, k := range []string{"OPENAI_API_KEY", "OPENAI_BASE_URL", "TROY_MODEL", "TROY_CLICKHOUSE", "TROY_NATS_URL", "NATS_URL", "TROY_POLICY", "TROY_DATA_DIR"} {
		os.Unsetenv(k)
	}
	// Reports are signed with a key of the tests' own, not the developer's (child
	// processes inherit it).
	keys, err := os.MkdirTemp("", "troyctl-keys")
	if err != nil {
		panic(err)
	}
	os.Setenv(signing.EnvKey, filepath.Join(keys, "signing.key"))
	code := m.Run()
	os.RemoveAll(keys)
	os.Exit(code)
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
	if r := troyctl(t, "verify", filepath.Join(dir, "audit.json"), filepath.Join(dir, "report.md")); r.code != 0 {
		t.Fatalf("verify: exit %d %s", r.code, r.stderr)
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
	if r := troyctl(t, "verify", "out/a.json", "out/r.md"); r.code != 0 {
		t.Errorf("verify: exit %d %s", r.code, r.stderr)
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
		{"check input not object", []string{"check", policy, "-a", "x", "-i", "[1]"}, `--input: expected a JSON object`},
		{"serve retention too short", []string{"serve", "--retain", "10m"}, `--retain "10m": expected a duration of at least 1h, such as 720h, or unlimited`},
		{"serve too many partitions", []string{"serve", "--evaluator-partitions", "5000"}, `--evaluator-partitions 5000: expected 0 (the steps stream read whole) to 1024`},
		{"serve retention size", []string{"serve", "--retain-bytes", "lots"}, `--retain-bytes "lots": expected a size of at least 1MB`},
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
	reports, _ := filepath.Glob(filepath.Join("out", "*", "*.*"))
	if r := troyctl(t, append([]string{"verify"}, reports...)...); r.code != 0 || len(reports) != 12 {
		t.Errorf("verify %d reports: exit %d %s", len(reports), r.code, r.stderr)
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

// validate checks policy files; a policy init combines audits as its templates do.
func TestPoliciesValidateAndMerged(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	all, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"policies", "init", "-o", "policy.json"}
	for _, tp := range all {
		args = append(args, "-t", tp.Name)
	}
	if r := troyctl(t, args...); r.code != 0 {
		t.Fatalf("init: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := troyctl(t, "policies", "copy", all[0].Name, "-o", "mine.json"); r.code != 0 {
		t.Fatalf("copy: %s", r.stderr)
	}
	r := troyctl(t, "policies", "validate", "policy.json", "mine.json")
	if r.code != 0 || !strings.Contains(r.stdout, "policy.json: ok (") || !strings.Contains(r.stdout, fmt.Sprintf("mine.json: ok (%d rules", len(all[0].Policy.Rules))) {
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
	// The merged policy finds, in a trace, what its templates find one by one.
	violated := func(policy string) map[string]bool {
		t.Helper()
		r := troyctl(t, "audit", example(t, "traces", "privilege-escalation.json"), policy, "-o", "r.md", "-j", "a.json", "--json", "--no-explain")
		var out struct {
			Violations []schemas.Violation `json:"violations"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("audit with %s: %d %s %s", policy, r.code, r.stdout, r.stderr)
		}
		ids := map[string]bool{}
		for _, v := range out.Violations {
			ids[v.RuleID+" at "+v.StepID] = true
		}
		return ids
	}
	want := map[string]bool{}
	for _, tp := range all {
		for id := range violated(tp.Name) {
			want[id] = true
		}
	}
	if got := violated("policy.json"); len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("the merged policy found %v, its templates %v", got, want)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if r := troyctl(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "troyctl ") {
		t.Fatalf("version: %+v", r)
	}
	// Every command explains itself with an example.
	// Each command is registered once, so that help lists it once.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Name() != "help" && c.Name() != "completion" && c.Example == "" {
			t.Errorf("%s has no example in its --help", c.CommandPath())
		}
		seen := map[string]bool{}
		for _, sub := range c.Commands() {
			if seen[sub.Name()] {
				t.Errorf("%s is registered twice under %s", sub.Name(), c.CommandPath())
			}
			seen[sub.Name()] = true
			walk(sub)
		}
	}
	walk(newRoot(&app{}))
	if r := troyctl(t, "audit", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Fatalf("audit --help: %s", r.stdout)
	}
}
