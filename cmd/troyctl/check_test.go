package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"
)

// writePolicy writes a policy file of one rule, with extra top-level JSON when given.
func writePolicy(t *testing.T, condition, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.json")
	doc := fmt.Sprintf(`{"policy_id": "p", %s "rules": [{"rule_id": "r", "description": "d", "condition": %q, "weight": 40}]}`, extra, condition)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type ruleErrorCase struct {
	name   string
	args   []string // after the policy
	policy string   // "" for guardrails
	code   int
	errors int // rule_errors listed
}

// The rule errors of a decision, with the exit code, in enforce mode (blocked unless
// skipped), in monitor mode, with the policy's setting and the flag's.
func ruleErrorCases(t *testing.T) []ruleErrorCase {
	skipping := writePolicy(t, "step.metadata.total_tokens > 100000", `"on_rule_error": "skip",`)
	blocking := writePolicy(t, "step.metadata.total_tokens > 100000", `"on_rule_error": "block",`)
	tokens := func(v string) []string {
		return []string{"-a", "chat", "-t", "llm_call", "--metadata", `{"total_tokens": ` + v + `}`}
	}
	return []ruleErrorCase{
		{name: "a string blocks", args: tokens(`"200000"`), code: 2, errors: 1},
		{name: "the number is a violation", args: tokens("200000"), code: 2},
		{name: "a small number passes", args: tokens("5"), code: 0},
		{name: "monitor allows and lists", args: append(tokens(`"200000"`), "--mode", "monitor"), code: 0, errors: 1},
		{name: "dry-run allows and lists", args: append(tokens(`"200000"`), "--mode", "dry-run"), code: 0, errors: 1},
		{name: "the flag skips", args: append(tokens(`"200000"`), "--on-rule-error", "skip"), code: 0, errors: 1},
		{name: "the policy skips", policy: skipping, args: tokens(`"200000"`), code: 0, errors: 1},
		{name: "the flag wins over the policy's skip", policy: skipping, args: append(tokens(`"200000"`), "--on-rule-error", "block"), code: 2, errors: 1},
		{name: "the flag wins over the policy's block", policy: blocking, args: append(tokens(`"200000"`), "--on-rule-error", "skip"), code: 0, errors: 1},
	}
}

func checkRuleErrors(t *testing.T, tc ruleErrorCase, extra ...string) {
	t.Helper()
	policy := tc.policy
	if policy == "" {
		policy = "guardrails"
	}
	r := troyctl(t, append(append([]string{"check", policy}, tc.args...), extra...)...)
	if r.code != tc.code {
		t.Fatalf("exit %d, want %d: %s %s", r.code, tc.code, r.stdout, r.stderr)
	}
	var out checkOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if out.RuleErrors == nil || len(out.RuleErrors) != tc.errors || out.Allowed != (tc.code == 0) {
		t.Fatalf("decision %+v: want %d rule errors", out, tc.errors)
	}
	if tc.errors > 0 {
		if e := out.RuleErrors[0]; !strings.Contains(e.Error, "invalid operation: string > int") || e.RuleID == "" {
			t.Fatalf("rule error %+v", e)
		}
		if !strings.Contains(r.stderr, "could not be evaluated") {
			t.Fatalf("no warning on stderr: %s", r.stderr)
		}
	}
}

func TestCheckRuleErrors(t *testing.T) {
	for _, tc := range ruleErrorCases(t) {
		t.Run(tc.name, func(t *testing.T) { checkRuleErrors(t, tc) })
	}
	r := troyctl(t, "check", "minimal", "-a", "x", "--on-rule-error", "ignore")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, `--on-rule-error: expected block or skip, got "ignore"`) {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
	bad := writePolicy(t, "true", `"on_rule_error": "ignore",`)
	if r := troyctl(t, "check", bad, "-a", "x"); r.code != 1 || !strings.Contains(r.stderr, `on_rule_error: expected "block" or "skip", got "ignore"`) {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
}

// The same decisions from a running guard service (troyctl serve, a separate process),
// with the rule errors counted in its /metrics.
func TestCheckRuleErrorsAgainstARunningGuard(t *testing.T) {
	port, metrics := servetest.FreePort(t), servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--metrics", fmt.Sprintf("127.0.0.1:%d", metrics))
	for _, tc := range ruleErrorCases(t) {
		t.Run(tc.name, func(t *testing.T) { checkRuleErrors(t, tc, "--nats", url) })
	}
	// The service counts what it decided with the policy's setting (the check command
	// applies its flag to the answer): monitor and dry-run allowed; the string, the flag's
	// skip and the policy's block blocked; the policy's skip twice skipped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		if strings.Contains(text, `troy_rule_errors_total{component="guard",outcome="allowed"} 2`) &&
			strings.Contains(text, `troy_rule_errors_total{component="guard",outcome="blocked"} 3`) &&
			strings.Contains(text, `troy_rule_errors_total{component="guard",outcome="skipped"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", grepLines(text, "troy_rule_errors_total"))
		}
		time.Sleep(50 * time.Millisecond) // polling the metrics, bounded by the deadline
	}
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Numbers in --input and --metadata are read as Python's json reads them.
func TestCheckNumbersAsPython(t *testing.T) {
	policy := writePolicy(t, "step.input.amount > 1000", "")
	tests := []struct {
		amount string
		code   int
	}{
		{"1e999999", 2},
		{"Infinity", 2},
		{"-1e999999", 0},
		{"-Infinity", 0},
		{"NaN", 0}, // NaN > 1000 is False in Python
		{"123456789012345678901234567890", 2},
		{"-123456789012345678901234567890", 0},
		{"1000", 0},
		{"1000.0000000000001", 2},
		{"1E3", 0},
		{"1.0001E3", 2},
		{"-0", 0},
	}
	for _, tt := range tests {
		r := troyctl(t, "check", policy, "-a", "pay", "-i", `{"amount": `+tt.amount+`}`)
		if r.code != tt.code {
			t.Errorf("amount %s: exit %d, want %d: %s %s", tt.amount, r.code, tt.code, r.stdout, r.stderr)
		}
	}
	for _, bad := range []struct{ flag, value, want string }{
		{"-i", `{"amount": ` + strings.Repeat("9", 5000) + `}`, "--input: invalid JSON: amount: an integer of 5000 digits: at most 4300 are read, as in Python"},
		{"--metadata", `[1]`, "--metadata: expected a JSON object"},
	} {
		r := troyctl(t, "check", policy, "-a", "pay", bad.flag, bad.value)
		if r.code != 1 || !strings.Contains(r.stderr, bad.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s %.30s: exit %d: %q, want one line with %q", bad.flag, bad.value, r.code, r.stderr, bad.want)
		}
	}
}

// A trace file with Python's numbers is audited with them, audit.json keeps them as they
// were (digits, NaN, Infinity, 5.0), and replay reads it back and re-evaluates with them.
// The step whose amount is a string is a rule error in audit.json and report.md.
func TestAuditAndReplayKeepNumbers(t *testing.T) {
	t.Chdir(t.TempDir())
	big := "123456789012345678901234567890"
	trace := `{"trace_id": "nums", "agent_name": "a", "steps": [
		{"step_id": "s1", "type": "tool_call", "description": "pay", "input": {"amount": ` + big + `, "fee": 5.0}, "output": {}},
		{"step_id": "s2", "type": "tool_call", "description": "pay", "input": {"amount": NaN}, "output": {"x": -Infinity}},
		{"step_id": "s3", "type": "tool_call", "description": "pay", "input": {"amount": 1e999999}, "output": {}},
		{"step_id": "s4", "type": "tool_call", "description": "pay", "input": {"amount": "2000"}, "output": {}}]}`
	if err := os.WriteFile("trace.json", []byte(trace), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := writePolicy(t, "step.input.amount > 1000", "")
	r := troyctl(t, "audit", "trace.json", policy, "-j", "audit.json", "-o", "report.md")
	if r.code != 0 || !strings.Contains(r.stdout, "Found 2 violation(s)") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	raw, err := os.ReadFile("audit.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"amount": ` + big, `"fee": 5.0`, `"amount": NaN`, `"x": -Infinity`, `"amount": Infinity`,
		`"rule_errors": [`, `"first_step_id": "s4"`, `"first_error": "line 1, column 19: invalid operation: string > int"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit.json lacks %s:\n%s", want, raw)
		}
	}
	md, err := os.ReadFile("report.md")
	if err != nil || !strings.Contains(string(md), "## Rule Errors") || !strings.Contains(string(md), "| r | 1 | s4 |") {
		t.Fatalf("report.md: %v\n%s", err, md)
	}
	r = troyctl(t, "replay", "audit.json", "--policy", writePolicy(t, "step.input.amount > 1e28", ""), "--no-interactive")
	if r.code != 0 || !strings.Contains(r.stdout, big) {
		t.Fatalf("replay: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	// The stricter policy still finds the 30-digit amount and infinity: nothing changed.
	if r := troyctl(t, "diff", "audit.json", "audit.json", "--json"); r.code != 0 {
		t.Fatalf("diff of an audit with itself: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}

// A flag's JSON that Python's json refuses is a usage error, worded as the Python tool's
// (click's) with Python's decoder message, exit code 2. The messages are Python 3.11's.
func TestCheckInvalidJSONAsPython(t *testing.T) {
	tests := []struct{ flag, value, msg string }{
		{"--input", " ", "Expecting value: line 1 column 2 (char 1)"},
		{"--input", "{nope", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"-i", `{"amount": -NaN}`, "Expecting value: line 1 column 12 (char 11)"},
		{"-i", `{"q": "x}`, "Unterminated string starting at: line 1 column 7 (char 6)"},
		{"--metadata", `{"a": 1} {"b": 2}`, "Extra data: line 1 column 10 (char 9)"},
		{"--metadata", "{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"--agent-metadata", `{"a": tru}`, "Expecting value: line 1 column 7 (char 6)"},
		{"--agent-metadata", `{"a": 1,}`, "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"},
	}
	for _, tt := range tests {
		name := map[string]string{"-i": "--input"}[tt.flag]
		if name == "" {
			name = tt.flag
		}
		r := troyctl(t, "check", "minimal", "-a", "x", tt.flag, tt.value)
		want := "Usage: troyctl check [OPTIONS] POLICY_FILE\nTry 'troyctl check --help' for help.\n\nError: Invalid value: Invalid JSON for " + name + ": " + tt.msg + "\n"
		if r.code != 2 || r.stderr != want || r.stdout != "" {
			t.Errorf("%s %s: exit %d %q %q, want %q", tt.flag, tt.value, r.code, r.stdout, r.stderr, want)
		}
	}
	// An empty value, or one Python takes for false, counts as not given (the Python tool
	// passes `value or {}` on); other JSON that is not an object is bad input (exit 1).
	for _, args := range [][]string{{"-i", ""}, {"--metadata", ""}, {"--agent-metadata", ""}, {"-i", "null"}, {"--metadata", " null "},
		{"-i", "[]"}, {"-i", "0"}, {"-i", "-0.0"}, {"--metadata", "false"}, {"--agent-metadata", `""`}, {"--agent-metadata", "{}"}} {
		if r := troyctl(t, append([]string{"check", "minimal", "-a", "x"}, args...)...); r.code != 0 || r.stderr != "" {
			t.Errorf("%q: exit %d %q", args, r.code, r.stderr)
		}
	}
	for _, v := range []string{"[1]", "1", "NaN", `"x"`, "true"} {
		if r := troyctl(t, "check", "minimal", "-a", "x", "-i", v); r.code != 1 || !strings.Contains(r.stderr, "--input: expected a JSON object") {
			t.Errorf("%s: exit %d %q", v, r.code, r.stderr)
		}
	}
}

// check's stdout is the decision alone, written as the Python tool writes it (json.dumps
// with indent=2: its keys in its order, characters beyond ASCII escaped), with
// rule_errors last; notices go to stderr. Exit 0 allowed, 2 blocked.
func TestCheckOutputAsPython(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	// A policy in the Python tool's dialect: converting it is a notice, on stderr.
	os.WriteFile(policy, []byte(`{"policy_id": "p", "rules": [{"rule_id": "r", "description": "Café — naïve", "severity": "high", "weight": 30,
		"condition": "step['type'] == 'tool_call' and get(step, 'metadata.zone') is not None"}]}`), 0o644)
	r := troyctl(t, "check", policy, "-a", "send", "--metadata", `{"zone": "é"}`)
	want := `{
  "allowed": false,
  "step_id": "step-0",
  "risk_score": 30,
  "mode": "enforce",
  "violations": [
    {
      "rule_id": "r",
      "rule_description": "Caf\u00e9 \u2014 na\u00efve",
      "severity": "high",
      "details": %s
    }
  ],
  "rule_errors": []
}
`
	var out checkOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Violations) != 1 {
		t.Fatalf("exit %d: %v\n%s", r.code, err, r.stdout)
	}
	details, _ := json.Marshal(out.Violations[0].Details)
	details = []byte(strings.ReplaceAll(string(details), "é", `\u00e9`))
	details = []byte(strings.ReplaceAll(string(details), "—", `\u2014`))
	details = []byte(strings.ReplaceAll(string(details), "ï", `\u00ef`))
	if r.code != 2 || r.stdout != fmt.Sprintf(want, details) {
		t.Fatalf("exit %d:\n%s\nwant\n%s", r.code, r.stdout, fmt.Sprintf(want, details))
	}
	if !strings.Contains(r.stderr, "conditions converted from Python") {
		t.Fatalf("the conversion notice belongs on stderr: %q", r.stderr)
	}
	r = troyctl(t, "check", policy, "-a", "send", "--metadata", `{"zone": "é"}`, "--mode", "monitor")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "{\n  \"allowed\": true,\n  \"step_id\": \"step-0\",\n  \"risk_score\": 30,\n  \"mode\": \"monitor\",\n") {
		t.Fatalf("monitor: exit %d\n%s", r.code, r.stdout)
	}
	r = troyctl(t, "check", policy, "-a", "send", "-t", "llm_call")
	if r.code != 0 || r.stdout != "{\n  \"allowed\": true,\n  \"step_id\": \"step-0\",\n  \"risk_score\": 0,\n  \"mode\": \"enforce\",\n  \"violations\": [],\n  \"rule_errors\": []\n}\n" {
		t.Fatalf("allowed: exit %d\n%q", r.code, r.stdout)
	}
}

// check's usage errors are the Python tool's (click's): usage on stderr, then the error,
// exit code 2, nothing on stdout; the first one in click's order of parameters wins.
func TestCheckUsageErrors(t *testing.T) {
	policy := example(t, "policy.json")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no policy", nil, "Missing argument 'POLICY_FILE'."},
		{"no policy file", []string{"nope.json", "-a", "x"}, "Invalid value for 'POLICY_FILE': Path 'nope.json' does not exist."},
		{"extra argument", []string{policy, "more", "-a", "x"}, "Got unexpected extra argument (more)"},
		{"extra arguments", []string{policy, "a", "b", "-a", "x"}, "Got unexpected extra arguments (a b)"},
		{"no action", []string{policy}, "Missing option '--action' / '-a'."},
		{"no action before a bad mode", []string{policy, "--mode", "block"}, "Missing option '--action' / '-a'."},
		{"bad step type", []string{policy, "-a", "x", "-t", "tool"}, "Invalid value for '--step-type' / '-t': 'tool' is not one of 'tool_call', 'llm_call', 'decision', 'observation'."},
		{"bad mode", []string{policy, "-a", "x", "--mode", "block"}, "Invalid value for '--mode': 'block' is not one of 'enforce', 'monitor', 'dry-run'."},
		{"unknown option", []string{policy, "-a", "x", "--frobnicate"}, "No such option: --frobnicate"},
		{"option without its value", []string{policy, "-a"}, "Option '-a' requires an argument."},
		{"long option without its value", []string{policy, "--action"}, "Option '--action' requires an argument."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := troyctl(t, append([]string{"check"}, tt.args...)...)
			want := "Usage: troyctl check [OPTIONS] POLICY_FILE\nTry 'troyctl check --help' for help.\n\nError: " + tt.want + "\n"
			if r.code != 2 || r.stderr != want || r.stdout != "" {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant %q", r.code, r.stdout, r.stderr, want)
			}
		})
	}
	// A bundled template's name is a policy, though no file has it.
	if r := troyctl(t, "check", "minimal", "-a", "search"); r.code != 0 {
		t.Fatalf("check of a template: %d %s", r.code, r.stderr)
	}
}

// A session keeps its first policy: a later check in it with another policy is refused
// with exit 1, naming both policies, rather than decided with the first one in silence.
// The same policy, a new session, or a session that ended are checked as usual.
func TestCheckSessionKeepsItsFirstPolicy(t *testing.T) {
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal")
	check := func(policy, session string) result {
		return troyctl(t, "check", policy, "-a", "search", "--nats", url, "--session", session)
	}
	if r := check("minimal", "s1"); r.code != 0 {
		t.Fatalf("first check: exit %d: %s", r.code, r.stderr)
	}
	if r := check("minimal", "s1"); r.code != 0 {
		t.Fatalf("same policy: exit %d: %s", r.code, r.stderr)
	}
	r := check("soc2", "s1")
	if r.code != exitError || r.stdout != "" || !strings.Contains(r.stderr, "troyctl: session s1 keeps its first policy, minimal (") ||
		!strings.Contains(r.stderr, "this check's policy is soc2-trust-services (") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("another policy: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := check("soc2", "s2"); r.code == exitError || !strings.Contains(r.stdout, `"allowed"`) {
		t.Fatalf("a new session: exit %d: %s", r.code, r.stderr)
	}
}
