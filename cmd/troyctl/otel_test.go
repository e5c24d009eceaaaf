package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas"
)

func otlpTestdata(t *testing.T, name string) string {
	return filepath.Join(repo(t), "ingest", "otel", "testdata", name)
}

// An agent run exported by the OpenTelemetry SDK (GenAI conventions), audited from the
// OTLP JSON file: the violations the policy defines, at the steps the spans became.
func TestAuditOTLPFile(t *testing.T) {
	t.Chdir(t.TempDir())
	r := troyctl(t, "audit", otlpTestdata(t, "genai-agent.otlp.jsonl"), example(t, "policy.json"), "--json", "--no-explain", "-o", "r.md", "-j", "a.json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		TraceID    string              `json:"trace_id"`
		AgentName  string              `json:"agent_name"`
		Steps      int                 `json:"steps"`
		RiskScore  int                 `json:"risk_score"`
		Violations []schemas.Violation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	var got []string
	for _, v := range out.Violations {
		got = append(got, v.RuleID+"@"+v.StepID)
	}
	want := []string{"pii-exfiltration-protection@1ba1ed776353694c", "secure-db-access@3ad2579a45f56b78"}
	if out.TraceID != "8baeadf19cd9d98b47d2d258b77bfc7d" || out.AgentName != "support-assistant" || out.Steps != 8 || out.RiskScore != 90 ||
		strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%+v\nviolations %v, want %v", out, got, want)
	}
	raw, err := os.ReadFile("a.json")
	if err != nil {
		t.Fatal(err)
	}
	var a schemas.AuditResult
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	var shape []string
	for _, s := range a.Trace.Steps {
		shape = append(shape, s.Type+":"+s.Description)
	}
	if strings.Join(shape, " ") != "llm_call:gpt-4o-mini decision:Call get_customer_profile tool_call:get_customer_profile tool_call:run_sql llm_call:gpt-4o-mini decision:Call http_post tool_call:http_post llm_call:gpt-4o-mini" {
		t.Fatalf("steps %v", shape)
	}
	post := a.Trace.Steps[6]
	if post.Input["url"] != "https://enrich.example-partner.io/v1/people" || post.Metadata["network_zone"] != "external" || *post.Timestamp != "2026-03-02T09:14:11Z" {
		t.Fatalf("http_post step %+v", post)
	}
	if a.Trace.Metadata["permission_level"] != "user" || a.Trace.Metadata["service.name"] != "support-service" {
		t.Fatalf("trace metadata %v", a.Trace.Metadata)
	}
}

// A batch over a folder of OTLP JSON files from each convention: one audit per trace,
// with the tool calls' names and arguments as the agents used them.
func TestBatchOTLPFiles(t *testing.T) {
	t.Chdir(t.TempDir())
	os.Mkdir("runs", 0o755)
	for _, f := range []string{"genai-agent.otlp.jsonl", "openinference.otlp.jsonl", "vercel-ai.otlp.jsonl"} {
		data, err := os.ReadFile(otlpTestdata(t, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join("runs", f), data, 0o644)
	}
	policy := `{"policy_id": "otel-tools", "rules": [
	  {"rule_id": "search-refunds", "description": "d", "condition": "step.type == 'tool_call' and step.description == 'search_docs' and get(step, 'input.query') == 'refund policy'", "severity": "high", "weight": 30},
	  {"rule_id": "weather-paris", "description": "d", "condition": "step.type == 'tool_call' and step.description == 'weather' and get(step, 'input.city') == 'Paris'", "severity": "medium", "weight": 20},
	  {"rule_id": "external-post", "description": "d", "condition": "step.type == 'tool_call' and step.metadata.network_zone == 'external'", "severity": "low", "weight": 5}
	]}`
	os.WriteFile("policy.json", []byte(policy), 0o644)
	r := troyctl(t, "batch", "runs", "policy.json", "-o", "out", "--json", "-q", "--no-explain")
	if r.code != 0 {
		t.Fatalf("exit %d: %s\n%s", r.code, r.stderr, r.stdout)
	}
	var out struct {
		Results []struct {
			AgentName  string `json:"agent_name"`
			Source     string `json:"source"`
			Steps      int    `json:"steps"`
			Violations int    `json:"violations"`
			Report     string `json:"report"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	var got []string
	for _, res := range out.Results {
		got = append(got, res.Source+" "+res.AgentName+" "+strconv.Itoa(res.Steps)+" "+strconv.Itoa(res.Violations))
		if _, err := os.Stat(res.Report); err != nil {
			t.Error(err)
		}
	}
	want := "genai-agent.otlp.jsonl:1 support-assistant 8 1|openinference.otlp.jsonl:1 research-assistant 5 1|vercel-ai.otlp.jsonl:1 weather-app 4 1"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}
