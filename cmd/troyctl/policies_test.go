package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/policies"
)

// troyctlIn runs a command line in process with stdin holding the given text.
func troyctlIn(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func templates(t *testing.T) []policies.Template {
	t.Helper()
	all, err := policies.Templates()
	if err != nil || len(all) == 0 {
		t.Fatalf("templates: %d, %v", len(all), err)
	}
	return all
}

func notFoundLine(name string) string {
	return "Policy '" + name + "' not found. Run 'troyctl policies list' to see available policies.\n"
}

// The list's columns, as the Python tool prints them.
func TestPoliciesListFormat(t *testing.T) {
	var b bytes.Buffer
	rules := make([]policies.Rule, 8)
	writeTemplateList(&b, []policies.Template{
		{Name: "agent_safety", Policy: &policies.Policy{PolicyID: "agent-safety", Description: "Guardrails.", Rules: rules}},
		{Name: "soc2", Policy: &policies.Policy{PolicyID: "soc2-trust-services", Description: "SOC 2 — trust.", Rules: append(rules, rules[:2]...)}},
		{Name: "x", Policy: &policies.Policy{PolicyID: "a-policy-id-longer-than-25-characters", Description: "", Rules: rules[:1]}},
	})
	want := "  agent-safety               8 rules  — Guardrails.\n" +
		"  soc2-trust-services       10 rules  — SOC 2 — trust.\n" +
		"  a-policy-id-longer-than-25-characters  1 rules  — \n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	writeTemplateList(&b, nil)
	if b.String() != "No bundled policies found.\n" {
		t.Fatalf("no templates: %q", b.String())
	}
}

// list shows every bundled template by policy id, sorted by name; --json gives the names.
func TestPoliciesList(t *testing.T) {
	all := templates(t)
	var want strings.Builder
	for i, tp := range all {
		if i > 0 && all[i-1].Name >= tp.Name {
			t.Errorf("templates not sorted by name: %s before %s", all[i-1].Name, tp.Name)
		}
		fmt.Fprintf(&want, "  %s%s %2d rules  — %s\n", tp.Policy.PolicyID, strings.Repeat(" ", max(0, 25-len([]rune(tp.Policy.PolicyID)))), len(tp.Policy.Rules), tp.Policy.Description)
	}
	r := troyctl(t, "policies", "list")
	if r.code != 0 || r.stdout != want.String() || r.stderr != "" {
		t.Fatalf("list: exit %d\n%s\nwant\n%s\nstderr %s", r.code, r.stdout, want.String(), r.stderr)
	}
	r = troyctl(t, "policies", "list", "--json")
	var list []struct {
		Name, PolicyID, Description string
		Rules                       int
	}
	if err := json.Unmarshal([]byte(strings.ReplaceAll(r.stdout, `"policy_id"`, `"policyid"`)), &list); err != nil || len(list) != len(all) {
		t.Fatalf("list --json: %v %s", err, r.stdout)
	}
	for i, e := range list {
		tp := all[i]
		if e.Name != tp.Name || e.PolicyID != tp.Policy.PolicyID || e.Description != tp.Policy.Description || e.Rules != len(tp.Policy.Rules) {
			t.Errorf("list --json[%d] = %+v, want %s", i, e, tp.Name)
		}
	}
}

// show's layout, line for line, on a terminal (coloured labels) and off one.
func TestPoliciesShowFormat(t *testing.T) {
	p := &policies.Policy{PolicyID: "minimal", Description: "A tiny starter set.", Rules: []policies.Rule{
		{RuleID: "min-prompt-injection", Description: "Injection phrases.", Severity: "critical"},
		{RuleID: "min-shell-execution", Description: "Bare shell tools.", Severity: "high"},
		{RuleID: "m", Description: "Medium.", Severity: "medium"},
		{RuleID: "l", Description: "Low.", Severity: "low"},
	}}
	var b bytes.Buffer
	writePolicyDetails(&b, p, "embedded:templates/minimal.json", false)
	want := `
  minimal
  A tiny starter set.

   [critical]  min-prompt-injection
              Injection phrases.
       [high]  min-shell-execution
              Bare shell tools.
     [medium]  m
              Medium.
        [low]  l
              Low.

  4 rules total
  File: embedded:templates/minimal.json

`
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	p.Rules = append(p.Rules[:1], policies.Rule{RuleID: "o", Description: "Other.", Severity: "other"})
	writePolicyDetails(&b, p, "f", true)
	for _, line := range []string{"   \x1b[31m[critical]\x1b[0m  min-prompt-injection\n", "      \x1b[37m[other]\x1b[0m  o\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("coloured show lacks %q:\n%q", line, b.String())
		}
	}
	if useColor(&b) {
		t.Error("a buffer is no terminal")
	}
	for _, tc := range []struct {
		terminal bool
		noColor  string
		want     bool
	}{{true, "", true}, {true, "1", false}, {true, "0", false}, {false, "", false}} {
		if got := colorWanted(tc.terminal, tc.noColor); got != tc.want {
			t.Errorf("terminal %v, NO_COLOR %q: colour %v", tc.terminal, tc.noColor, got)
		}
	}
}

// show finds every template by name and by policy id, shows a policy file with its
// absolute path, and says when a name is neither.
func TestPoliciesShow(t *testing.T) {
	for _, tp := range templates(t) {
		var want bytes.Buffer
		writePolicyDetails(&want, tp.Policy, "embedded:templates/"+tp.Name+".json", false)
		if !strings.Contains(want.String(), fmt.Sprintf("\n  %d rules total\n", len(tp.Policy.Rules))) {
			t.Fatalf("%s: %s", tp.Name, want.String())
		}
		for _, name := range []string{tp.Name, tp.Policy.PolicyID} {
			r := troyctl(t, "policies", "show", name)
			if r.code != 0 || r.stdout != want.String() || r.stderr != "" {
				t.Errorf("show %s: exit %d\n%s\nwant\n%s", name, r.code, r.stdout, want.String())
			}
		}
	}
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("mine.json", []byte(`{"policy_id": "mine", "description": "Mine.", "rules": [{"rule_id": "r", "description": "d", "condition": "true"}]}`), 0o644)
	r := troyctl(t, "policies", "show", "mine.json")
	want := "\n  mine\n  Mine.\n\n     [medium]  r\n              d\n\n  1 rules total\n  File: " + filepath.Join(dir, "mine.json") + "\n\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("show a file: exit %d %q, want %q", r.code, r.stdout, want)
	}
	for _, name := range []string{"nope", "agent-safety.json", "."} {
		if r := troyctl(t, "policies", "show", name); r.code != 1 || r.stdout != notFoundLine(name) || r.stderr != "" {
			t.Errorf("show %s: exit %d %q %q", name, r.code, r.stdout, r.stderr)
		}
	}
}

// copy writes the template byte for byte to NAME.json (NAME as typed) or -o, asks before
// overwriting, and answers as the Python tool does.
func TestPoliciesCopy(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tp := range templates(t) {
		for _, name := range []string{tp.Name, tp.Policy.PolicyID} {
			os.Remove(name + ".json")
			r := troyctl(t, "policies", "copy", name)
			want := fmt.Sprintf("Copied %s.json → %s.json\nEdit %s.json to customize rules for your project.\n", tp.Name, name, name)
			if r.code != 0 || r.stdout != want || r.stderr != "" {
				t.Fatalf("copy %s: exit %d %q, want %q; stderr %s", name, r.code, r.stdout, want, r.stderr)
			}
			if raw, err := os.ReadFile(name + ".json"); err != nil || !bytes.Equal(raw, tp.Raw) {
				t.Fatalf("copy %s is not the template byte for byte: %v", name, err)
			}
		}
	}
	all := templates(t)
	first, last := all[0], all[len(all)-1]
	if r := troyctl(t, "policies", "copy", first.Name, "-o", "./out//mine.json"); r.code != 0 || !strings.Contains(r.stdout, "→ out/mine.json\nEdit out/mine.json to") {
		t.Fatalf("copy -o, a path as Python writes it, its directory made: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	prompt := "out/mine.json already exists. Overwrite? [y/N]: "
	overwrite := []struct {
		stdin, stdout string
		replaced      bool
	}{
		{"", prompt, false}, // stdin at its end, as in CI: no
		{"n\n", prompt, false},
		{"no\n", prompt, false},
		{"\n", prompt, false},
		{"maybe\nNO\n", prompt + "Error: invalid input\n" + prompt, false},
		{"y\n", prompt + "Copied", true},
		{"YES\n", prompt + "Copied", true},
		{" y ", prompt + "Copied", true}, // a last line without its newline
	}
	for _, tc := range overwrite {
		os.WriteFile("out/mine.json", first.Raw, 0o644)
		r := troyctlIn(t, tc.stdin, "policies", "copy", last.Policy.PolicyID, "-o", "out/mine.json")
		raw, _ := os.ReadFile("out/mine.json")
		if tc.replaced {
			if r.code != 0 || !strings.HasPrefix(r.stdout, tc.stdout) || !bytes.Equal(raw, last.Raw) {
				t.Errorf("answer %q: exit %d %q %q", tc.stdin, r.code, r.stdout, r.stderr)
			}
			continue
		}
		if r.code != 1 || r.stdout != tc.stdout || r.stderr != "Aborted!\n" || !bytes.Equal(raw, first.Raw) {
			t.Errorf("answer %q: exit %d %q %q", tc.stdin, r.code, r.stdout, r.stderr)
		}
	}
	for _, flag := range []string{"--force", "-f"} {
		os.WriteFile("out/mine.json", first.Raw, 0o644)
		r := troyctl(t, "policies", "copy", last.Name, "-o", "out/mine.json", flag)
		if raw, _ := os.ReadFile("out/mine.json"); r.code != 0 || strings.Contains(r.stdout, "Overwrite?") || !bytes.Equal(raw, last.Raw) {
			t.Errorf("%s overwrites without asking: exit %d %q", flag, r.code, r.stdout)
		}
	}
	// Into a directory (it exists, so the question comes first), under the template's name.
	r := troyctlIn(t, "y\n", "policies", "copy", last.Policy.PolicyID, "-o", "out")
	if raw, _ := os.ReadFile(filepath.Join("out", last.FileName())); r.code != 0 || !bytes.Equal(raw, last.Raw) ||
		r.stdout != "out already exists. Overwrite? [y/N]: Copied "+last.FileName()+" → out\nEdit out to customize rules for your project.\n" {
		t.Fatalf("copy into a directory: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := troyctl(t, "policies", "copy", "nope", "-o", "nope.json"); r.code != 1 || r.stdout != notFoundLine("nope") || r.stderr != "" {
		t.Fatalf("copy of an unknown template: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat("nope.json"); err == nil {
		t.Fatal("copy of an unknown template wrote a file")
	}
}

// combined is what init must write for templates, computed apart from the command: the
// rules of each template in order, as written, the first of each rule id winning.
func combined(t *testing.T, description string, ts ...policies.Template) (map[string]any, int) {
	t.Helper()
	var rules []any
	seen := map[any]bool{}
	for _, tp := range ts {
		var doc struct{ Rules []map[string]any }
		if err := json.Unmarshal(tp.Raw, &doc); err != nil {
			t.Fatal(err)
		}
		for _, r := range doc.Rules {
			if !seen[r["rule_id"]] {
				seen[r["rule_id"]] = true
				rules = append(rules, r)
			}
		}
	}
	if rules == nil {
		rules = []any{}
	}
	return map[string]any{"policy_id": "custom-policy", "description": description, "rules": rules}, len(rules)
}

func checkInitFile(t *testing.T, path string, want map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: %v\n%s", path, err, raw)
	}
	for i, c := range raw {
		if c >= 0x80 {
			t.Fatalf("%s: byte %d is not ASCII: characters beyond ASCII are escaped", path, i)
		}
	}
	if !bytes.HasPrefix(raw, []byte("{\n  \"policy_id\": \"custom-policy\",\n  \"description\": ")) || !bytes.HasSuffix(raw, []byte("\n  ]\n}\n")) && !bytes.HasSuffix(raw, []byte("\"rules\": []\n}\n")) {
		t.Fatalf("%s: not indented by 2 with policy_id, description, rules and a final newline:\n%s", path, raw)
	}
}

func initOutput(out string, rules int, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Created %s with %d rules from %d template(s):\n", out, rules, len(names))
	for _, n := range names {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	fmt.Fprintf(&b, "\nEdit %s to customize rules for your project.\n", out)
	return b.String()
}

// init combines templates named by name or policy id into one file, as the Python tool
// writes it, and stops at the first unknown name before writing anything.
func TestPoliciesInit(t *testing.T) {
	t.Chdir(t.TempDir())
	all := templates(t)
	byName := map[string]policies.Template{}
	for _, tp := range all {
		byName[tp.Name] = tp
	}
	minimal, ok := byName["minimal"]
	if !ok {
		t.Fatal("no minimal template: init's default")
	}
	want, n := combined(t, "Combined policy from: minimal", minimal)
	if r := troyctl(t, "policies", "init"); r.code != 0 || r.stdout != initOutput("policy.json", n, "minimal") || r.stderr != "" {
		t.Fatalf("init: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkInitFile(t, "policy.json", want)

	// Every template, by policy id, then again by name: the second round adds nothing.
	var names []string
	for _, tp := range all {
		names = append(names, tp.Policy.PolicyID)
	}
	for _, tp := range all {
		names = append(names, tp.Name)
	}
	args := []string{"policies", "init", "-o", "deep/er/all.json"}
	for _, name := range names {
		args = append(args, "-t", name)
	}
	want, n = combined(t, "Combined policy from: "+strings.Join(names, ", "), append(all, all...)...)
	if r := troyctl(t, args...); r.code != 0 || r.stdout != initOutput("deep/er/all.json", n, names...) {
		t.Fatalf("init of every template: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkInitFile(t, "deep/er/all.json", want)

	// The same template twice: its rules once, its name twice.
	last := all[len(all)-1]
	want, n = combined(t, "Combined policy from: "+last.Name+", "+last.Policy.PolicyID, last)
	if r := troyctl(t, "policies", "init", "-t", last.Name, "-t", last.Policy.PolicyID, "-o", "twice.json"); r.code != 0 || r.stdout != initOutput("twice.json", n, last.Name, last.Policy.PolicyID) {
		t.Fatalf("init of one template twice: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkInitFile(t, "twice.json", want)

	// The first unknown name stops it before anything is written, even when asked to
	// overwrite.
	if r := troyctlIn(t, "y\n", "policies", "init", "-t", last.Name, "-t", "nope", "-t", "nope2", "-o", "policy.json"); r.code != 1 || r.stdout != notFoundLine("nope") || r.stderr != "" {
		t.Fatalf("init with an unknown template: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := troyctl(t, "policies", "init", "-t", "nope", "-o", "new.json"); r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	if _, err := os.Stat("new.json"); err == nil {
		t.Fatal("init with an unknown template wrote a file")
	}
	want, _ = combined(t, "Combined policy from: minimal", minimal)
	checkInitFile(t, "policy.json", want)

	// An existing file: the same question as copy's.
	if r := troyctl(t, "policies", "init", "-t", last.Name); r.code != 1 || r.stdout != "policy.json already exists. Overwrite? [y/N]: " || r.stderr != "Aborted!\n" {
		t.Fatalf("init over a file: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkInitFile(t, "policy.json", want)
	want, n = combined(t, "Combined policy from: "+last.Name, last)
	if r := troyctlIn(t, "y\n", "policies", "init", "-t", last.Name); r.code != 0 || r.stdout != "policy.json already exists. Overwrite? [y/N]: "+initOutput("policy.json", n, last.Name) {
		t.Fatalf("init over a file, answered y: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkInitFile(t, "policy.json", want)
	if r := troyctl(t, "policies", "init", "-f"); r.code != 0 {
		t.Fatalf("init -f: exit %d %q", r.code, r.stderr)
	}

	// What init writes loads and validates.
	if r := troyctl(t, "policies", "validate", "policy.json", "deep/er/all.json"); r.code != 0 {
		t.Fatalf("validate: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}

func TestPyPath(t *testing.T) {
	for in, want := range map[string]string{
		"policy.json": "policy.json", "./policy.json": "policy.json", "a//b/./c.json": "a/b/c.json", "out/": "out",
		"../x.json": "../x.json", "a/../b": "a/../b", "/abs/x": "/abs/x", "//net/x": "//net/x", "///x": "/x", "": ".", "./": ".",
	} {
		if got := pyPath(in); got != want {
			t.Errorf("pyPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// An interrupt while the question waits for an answer aborts, writing nothing.
func TestPoliciesCopyInterrupted(t *testing.T) {
	t.Chdir(t.TempDir())
	tp := templates(t)[0]
	os.WriteFile("p.json", []byte("mine"), 0o644)
	stdin, w := io.Pipe() // an answer that never comes
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"policies", "copy", tp.Name, "-o", "p.json"}, stdin, &out, &errb) }()
	cancel()
	select {
	case code := <-done:
		raw, _ := os.ReadFile("p.json")
		if code != 1 || errb.String() != "Aborted!\n" || string(raw) != "mine" {
			t.Fatalf("exit %d %q %q; file %q", code, out.String(), errb.String(), raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the question ignored the interrupt")
	}
}

// global_config settings troy does not read still load, with one notice per setting on
// stderr naming the file and the key; the examples have none.
func TestUnknownGlobalConfigSettings(t *testing.T) {
	withSettings := writePolicy(t, "false", `"global_config": {"halt_on_severity": "critical", "default_action": "monitor"},`)
	plain := writePolicy(t, "false", "")
	tests := []struct {
		name, policy string
		args         []string
		want         []string
	}{
		{"audit", withSettings, []string{"audit", example(t, "traces", "clean-run.json"), withSettings, "--no-explain", "-o", filepath.Join(t.TempDir(), "r.md"), "-j", filepath.Join(t.TempDir(), "a.json")},
			[]string{"global_config.default_action", "global_config.halt_on_severity"}},
		{"check", withSettings, []string{"check", withSettings, "-a", "search"}, []string{"global_config.default_action", "global_config.halt_on_severity"}},
		{"validate", withSettings, []string{"policies", "validate", withSettings}, []string{"global_config.default_action", "global_config.halt_on_severity"}},
		{"the example policy", example(t, "policy.json"), []string{"check", example(t, "policy.json"), "-a", "search"}, nil},
		{"no global_config", plain, []string{"check", plain, "-a", "search"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := troyctl(t, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var notices []string
			for _, l := range strings.Split(r.stderr, "\n") {
				if strings.Contains(l, "global_config.") {
					notices = append(notices, l)
				}
			}
			if len(notices) != len(tt.want) {
				t.Fatalf("notices %q, want one each for %q", notices, tt.want)
			}
			for i, key := range tt.want {
				want := "troyctl: notice: " + tt.args[slices.Index(tt.args, tt.policy)] + ": " + key + " is not a setting troy reads; it is kept and has no effect"
				if notices[i] != want {
					t.Fatalf("notice %q, want %q", notices[i], want)
				}
			}
		})
	}
}
