package pyconv_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// testdata/python-templates holds the Python tool's seven bundled templates as it has them
// (Python conditions). Each loads (its dialect is found and it converts), warns exactly where
// the Python tool's rules fail at run time, and gives the Python tool's verdicts.

type tstep struct {
	Type, Desc string
	In, Out    map[string]any
	Meta       map[string]any
}

// templateTrace builds a trace: steps s0, s1, ... with the given agent metadata.
func templateTrace(t *testing.T, agentMeta map[string]any, steps []tstep) *schemas.Trace {
	t.Helper()
	var list []map[string]any
	for i, s := range steps {
		m := map[string]any{"step_id": fmt.Sprintf("s%d", i), "type": s.Type, "description": s.Desc}
		for k, v := range map[string]map[string]any{"input": s.In, "output": s.Out, "metadata": s.Meta} {
			if v != nil {
				m[k] = v
			}
		}
		list = append(list, m)
	}
	doc := map[string]any{"trace_id": "t", "agent_name": "bot", "steps": list}
	if agentMeta != nil {
		doc["metadata"] = agentMeta
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ingest.DecodeTrace(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func loadPythonTemplate(t *testing.T, stem string) *policies.Policy {
	t.Helper()
	p, err := policies.LoadFile(filepath.Join("testdata", "python-templates", stem+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Converted != len(p.Rules) {
		t.Fatalf("%s: %d of %d conditions converted: not taken as Python", stem, p.Converted, len(p.Rules))
	}
	return p
}

func TestPythonTemplatesConvert(t *testing.T) {
	counts := map[string]int{"minimal": 3, "agent_safety": 8, "owasp_llm_top10": 8, "data_protection": 6, "safe_browsing": 6, "soc2": 10, "hipaa": 8}
	total := 0
	for stem, n := range counts {
		p := loadPythonTemplate(t, stem)
		if len(p.Rules) != n {
			t.Errorf("%s: %d rules, want %d", stem, len(p.Rules), n)
		}
		total += len(p.Rules)
		if _, err := evaluator.Compile(p); err != nil {
			t.Errorf("%s: %v", stem, err)
		}
		if p.OnRuleError() != schemas.OnRuleErrorSkip {
			t.Errorf("%s: on_rule_error %q, want skip as the Python tool", stem, p.OnRuleError())
		}
		var warned []string
		for _, w := range p.ConversionWarnings {
			warned = append(warned, w.String())
		}
		want := 0
		if stem == "agent_safety" {
			want = 2
		}
		if len(warned) != want {
			t.Errorf("%s: warnings %q", stem, warned)
		}
		if stem == "agent_safety" {
			if !strings.Contains(warned[0], `rule "safety-repeated-tool": condition (Python): line 1, column 22: all() is not in the Python tool's condition namespace`) ||
				!strings.Contains(warned[1], `rule "safety-raw-sql": condition (Python): line 1, column 41: + raises TypeError unless both operands are strings, both lists or both numbers`) {
				t.Errorf("agent_safety: warnings %q", warned)
			}
		}
	}
	if total != 49 {
		t.Errorf("%d rules in all, want 49", total)
	}
}

// The verdicts the Python tool gives, per the templates' documented behaviour: each case
// lists the violations step by step, in rule order, as "step:rule".
func TestPythonTemplatesVerdicts(t *testing.T) {
	search := tstep{Type: "tool_call", Desc: "search", In: map[string]any{}}
	safety := []tstep{
		{Type: "tool_call", Desc: "delete_rows", In: map[string]any{"query": "SEL", "sql": "ECT 1"}},
		{Type: "tool_call", Desc: "x", In: map[string]any{"query": "foo", "sql": "DROP x"}, Meta: map[string]any{"category": "financial"}},
		{Type: "tool_call", Desc: "send", In: map[string]any{"query": []any{"SELECT 1"}, "sql": []any{}}, Meta: map[string]any{"category": "communication", "proxy_approved": 1}},
		{Type: "tool_call", Desc: "y", In: map[string]any{"query": 1, "sql": true}, Meta: map[string]any{"permission_level": "admin"}},
		{Type: "tool_call", Desc: "z", In: map[string]any{"query": "SELECT 1", "sql": 5}, Meta: map[string]any{"network_zone": "external"}},
		{Type: "llm_call", Desc: "purge", In: map[string]any{"query": "SELECT"}},
		{Type: "tool_call", Desc: "q", In: map[string]any{"query": "select * from t"}},
		{Type: "tool_call", Desc: "q", In: map[string]any{"query": "selected drop_table"}},
		{Type: "tool_call", Desc: "q", In: map[string]any{"query": map[string]any{"a": 1}}},
	}
	for len(safety) < 52 {
		safety = append(safety, search)
	}
	cases := []struct {
		stem      string
		agentMeta map[string]any
		steps     []tstep
		want      []string
		errs      map[string]string // rule → "count@first step"
	}{
		{"minimal", nil, []tstep{
			{Type: "tool_call", Desc: "Bash", In: map[string]any{"You Are Now": 1}},
			{Type: "tool_call", Desc: "inform_user"},
			{Type: "tool_call", Desc: "confirm", Meta: map[string]any{"approval_token": ""}},
			{Type: "tool_call", Desc: "run_bash", In: map[string]any{"text": "you are  now"}},
			{Type: "llm_call", Desc: "rm", In: map[string]any{"q": "please ignore previous instructions"}},
			{Type: "tool_call", Desc: "bash ", In: map[string]any{"text": "you are nowhere"}},
		}, []string{"s0:min-prompt-injection", "s0:min-shell-execution", "s1:min-destructive-action", "s4:min-prompt-injection", "s5:min-prompt-injection"}, nil},
		{"agent_safety", map[string]any{"permission_level": "Admin"}, safety, []string{
			"s0:safety-destructive-action", "s0:safety-raw-sql", "s1:safety-financial-action",
			"s2:safety-communication-unproxied", "s2:safety-raw-sql", "s3:safety-privilege-escalation",
			"s4:safety-unauthenticated-external", "s6:safety-raw-sql", "s50:safety-runaway-loop", "s51:safety-runaway-loop",
		}, map[string]string{"safety-repeated-tool": "42@s10", "safety-raw-sql": "2@s4"}},
		{"owasp_llm_top10", nil, []tstep{
			{Type: "tool_call", Desc: "OS.System", In: map[string]any{"x": "Disregard THE rules"}, Out: map[string]any{"password": "x"}, Meta: map[string]any{"input_validated": false}},
			{Type: "llm_call", Desc: "answer", Out: map[string]any{"text": "Password: x"}, Meta: map[string]any{"requires_citation": true, "has_citation": "yes"}},
			{Type: "tool_call", Desc: "rmdir", Out: map[string]any{"card": 4111111111111111}, Meta: map[string]any{"data_classification": "pii", "network_zone": "external", "input_validated": 0}},
			{Type: "tool_call", Desc: "write_file ", Out: map[string]any{"ssn": "a123-45-6789", "n": 1e16}, Meta: map[string]any{"data_classification": "PII", "network_zone": "external", "approval_token": "t", "input_validated": nil}},
			{Type: "decision", Desc: "x", In: map[string]any{"q": "disregard my rules"}, Out: map[string]any{"k": "123-45-6789"}, Meta: map[string]any{"requires_citation": 1}},
			{Type: "llm_call", Desc: "y", Out: map[string]any{"a": "password   = x", "b": "password\t= y"}, Meta: map[string]any{"requires_citation": true, "has_citation": true}},
		}, []string{
			"s0:owasp-prompt-injection", "s0:owasp-insecure-plugin-design", "s0:owasp-excessive-agency-shell",
			"s1:owasp-sensitive-data-in-output", "s1:owasp-overreliance-no-source",
			"s2:owasp-sensitive-data-exposure", "s2:owasp-sensitive-data-in-output", "s2:owasp-excessive-agency-filesystem", "s2:owasp-excessive-agency-network",
			"s4:owasp-sensitive-data-in-output", "s5:owasp-sensitive-data-in-output",
		}, nil},
		{"data_protection", nil, []tstep{
			{Type: "observation", Desc: "early", Meta: map[string]any{"network_zone": "external"}},
			{Type: "tool_call", Desc: "read", Meta: map[string]any{"data_classification": "pii", "network_zone": "external"}},
			{Type: "observation", Desc: "x", Meta: map[string]any{"network_zone": "external"}},
			{Type: "tool_call", Desc: "t", Meta: map[string]any{"data_classification": "", "retention_days": 0, "retention_exceeded": true}},
			{Type: "tool_call", Desc: "t2"},
			{Type: "decision", Desc: "d", Meta: map[string]any{"data_classification": "secret", "log_level": "verbose", "source_region": "1", "dest_region": 1}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"source_region": 1, "dest_region": 1.0}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"source_region": "EU", "dest_region": "eu", "transfer_approved": 1}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"source_region": 0, "dest_region": false}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"source_region": "EU"}},
		}, []string{
			"s1:dp-pii-to-external", "s2:dp-pii-exfiltration-cross-step", "s3:dp-retention-exceeded", "s4:dp-unclassified-data",
			"s5:dp-sensitive-logging", "s5:dp-cross-border-transfer", "s7:dp-cross-border-transfer",
		}, nil},
		{"safe_browsing", nil, []tstep{
			{Type: "tool_call", Desc: "browser_fill_form", In: map[string]any{"api_key": "x"}},
			{Type: "tool_call", Desc: "browser_navigate", Meta: map[string]any{"domain_approved": "true"}},
			{Type: "tool_call", Desc: "download_report", Meta: map[string]any{"approval_token": nil}},
			{Type: "tool_call", Desc: "eval_js", Meta: map[string]any{"domain_approved": true}},
			{Type: "tool_call", Desc: "scrape", Meta: map[string]any{"category": "payment"}},
			{Type: "tool_call", Desc: "send_keys", In: map[string]any{"api": "key"}},
			{Type: "tool_call", Desc: "type_text", In: map[string]any{"v": "my secretary"}},
		}, []string{
			"s0:browse-credential-leak", "s0:browse-domain-allowlist", "s1:browse-domain-allowlist", "s2:browse-download-restricted",
			"s3:browse-javascript-execution", "s4:browse-data-extraction-unclassified", "s4:browse-payment-form", "s6:browse-credential-leak",
		}, nil},
		{"soc2", map[string]any{}, []tstep{
			{Type: "tool_call", Desc: "recreate_index", Meta: map[string]any{"environment": "production", "trace_id": ""}},
			{Type: "tool_call", Desc: "x", Meta: map[string]any{"network_zone": "external", "session_id": "s"}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"environment": "production", "error": false}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"data_classification": "pii", "legal_basis": "contract"}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"data_classification": "restricted", "network_zone": "external", "encrypted": "yes"}},
			{Type: "tool_call", Desc: "shutdown_db", Meta: map[string]any{"trace_id": 1, "category": "data_transform", "output_validated": true}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"permission_level": "admin", "environment": "Production", "error": "x"}},
			{Type: "tool_call", Desc: "y"},
		}, []string{
			"s0:soc2-change-approval", "s1:soc2-auth-required", "s1:soc2-vendor-risk", "s2:soc2-incident-response",
			"s4:soc2-confidential-data", "s5:soc2-availability-destructive", "s6:soc2-access-control", "s7:soc2-audit-trail",
		}, nil},
		{"hipaa", map[string]any{"hipaa_authorized": "true"}, []tstep{
			{Type: "tool_call", Desc: "read_chart", Meta: map[string]any{"data_classification": "phi"}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"network_zone": "external", "data_classification": "phi", "encrypted": true, "baa_on_file": true, "audit_ref": "a", "fields_scoped": true}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"data_classification": "PHI", "network_zone": "external", "access_type": "emergency"}},
			{Type: "decision", Desc: "d", Meta: map[string]any{"data_classification": "phi", "access_type": "emergency", "retention_exceeded": true, "audit_ref": "", "fields_scoped": true, "reviewed": 1}},
		}, []string{
			"s0:hipaa-phi-access-control", "s0:hipaa-phi-audit-log", "s0:hipaa-minimum-necessary",
			"s1:hipaa-phi-access-control", "s1:hipaa-phi-exfiltration", "s2:hipaa-phi-exfiltration",
			"s3:hipaa-phi-access-control", "s3:hipaa-phi-retention", "s3:hipaa-emergency-access",
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.stem, func(t *testing.T) {
			c, err := evaluator.Compile(loadPythonTemplate(t, tc.stem))
			if err != nil {
				t.Fatal(err)
			}
			res := c.Evaluate(templateTrace(t, tc.agentMeta, tc.steps))
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.StepID+":"+v.RuleID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("violations\n got %q\nwant %q", got, tc.want)
			}
			errs := map[string]string{}
			for _, e := range res.RuleErrors {
				errs[e.RuleID] = fmt.Sprintf("%d@%s", e.Count, e.FirstStep)
			}
			if len(errs) != len(tc.errs) {
				t.Errorf("rule errors %v, want %v", errs, tc.errs)
			}
			for k, v := range tc.errs {
				if errs[k] != v {
					t.Errorf("rule errors of %s: %q, want %q", k, errs[k], v)
				}
			}
		})
	}
}

// In the guard, a converted policy does what the Python tool's guard does with a rule that
// raises: no violation, the step allowed (the error is still reported). The Python tool's
// guard shows a step no output, so owasp-sensitive-data-in-output never fires there.
func TestPythonTemplatesGuard(t *testing.T) {
	c, err := evaluator.Compile(loadPythonTemplate(t, "agent_safety"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.NewGuard(evaluator.GuardOptions{AgentMetadata: map[string]any{"permission_level": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "search", Input: map[string]any{"query": "SELECT 1", "sql": 5}}})
		if err != nil {
			t.Fatal(err)
		}
		wantErrs := 1 // safety-raw-sql's TypeError
		if i >= 10 {
			wantErrs = 2 // and safety-repeated-tool's NameError
		}
		if !d.Allowed || len(d.Violations) != 0 || len(d.RuleErrors) != wantErrs {
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	c, err = evaluator.Compile(loadPythonTemplate(t, "owasp_llm_top10"))
	if err != nil {
		t.Fatal(err)
	}
	g, err = c.NewGuard(evaluator.GuardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "reply", Input: map[string]any{"text": "ssn 123-45-6789"}}})
	if err != nil || !d.Allowed {
		t.Fatalf("%+v %v", d, err)
	}
}
