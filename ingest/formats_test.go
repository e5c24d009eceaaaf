package ingest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// An audit.json written by the Python tool loads and is written back with the same content
// and the same field order (keys inside inputs, outputs and metadata come back sorted).
func TestSeedAuditJSONRoundTrips(t *testing.T) {
	raw, err := os.ReadFile("testdata/seed-audit.json")
	if err != nil {
		t.Fatal(err)
	}
	var r schemas.AuditResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Trace.Steps[1].ParentStepID == nil || *r.Trace.Steps[1].ParentStepID != "s1" || r.Summary == nil || r.RiskScore != 50 {
		t.Fatalf("fields lost in loading: %+v", r)
	}
	out, err := reporter.JSON(&r)
	if err != nil {
		t.Fatal(err)
	}
	var before, after any
	if err := json.Unmarshal(raw, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &after); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("round trip changed the content:\n%s", out)
	}
	if got, want := keyOrder(out), keyOrder(raw); got != want {
		t.Fatalf("field order changed:\n got %s\nwant %s", got, want)
	}
}

// keyOrder lists the fields of the audit, its trace, first step and first violation.
func keyOrder(doc []byte) string {
	var parts []string
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  "(\w+)":`),
		regexp.MustCompile(`(?m)^    "(\w+)":`),
		regexp.MustCompile(`(?m)^        "(\w+)":`),
	} {
		for _, m := range re.FindAllSubmatch(doc, -1) {
			parts = append(parts, string(m[1]))
		}
		parts = append(parts, "|")
	}
	return strings.Join(parts, " ")
}

func compile(t *testing.T, name, doc string) *jsonschema.Schema {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, v); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// The JSON Schema users give their editors accepts and rejects what troy itself does.
func TestTraceSchemaAgreesWithTheLoader(t *testing.T) {
	s := compile(t, "trace.schema.json", schemas.TraceSchema)
	docs := map[string]string{
		"minimal":        `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "decision", "description": "d"}]}`,
		"full":           `{"trace_id": "t", "agent_name": "a", "metadata": {}, "steps": [{"step_id": "s", "type": "tool_call", "description": "d", "input": {}, "output": {"x": [1]}, "metadata": {"approval_token": null}, "timestamp": "2026-01-01T00:00:00Z", "parent_step_id": null}]}`,
		"bad type":       `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool", "description": "d"}]}`,
		"no steps":       `{"trace_id": "t", "agent_name": "a", "steps": []}`,
		"no description": `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool_call"}]}`,
		"input string":   `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool_call", "description": "d", "input": "x"}]}`,
		"empty id":       `{"trace_id": "", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool_call", "description": "d"}]}`,
		"ts number":      `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool_call", "description": "d", "timestamp": 3}]}`,
	}
	entries, err := filepath.Glob("../examples/traces/*.json")
	if err != nil || len(entries) < 6 {
		t.Fatalf("examples: %v %v", entries, err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		docs[e] = string(raw)
	}
	for name, doc := range docs {
		_, loadErr := ingest.DecodeTrace([]byte(doc))
		schemaErr := validate(s, []byte(doc))
		if (loadErr == nil) != (schemaErr == nil) {
			t.Errorf("%s: loader says %v, schema says %v", name, loadErr, schemaErr)
		}
	}
}

func TestPolicySchemaAgreesWithTheLoader(t *testing.T) {
	s := compile(t, "policy.schema.json", schemas.PolicySchema)
	docs := map[string]string{
		"minimal":          `{"rules": []}`,
		"extras kept":      `{"policy_id": "p", "global_config": {"a": 1}, "rules": [{"rule_id": "r", "description": "d", "condition": "true", "mitigation": "x"}]}`,
		"bad severity":     `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "severity": "urgent"}]}`,
		"negative weight":  `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "weight": -1}]}`,
		"fraction weight":  `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "weight": 1.5}]}`,
		"empty condition":  `{"rules": [{"rule_id": "r", "description": "d", "condition": "  "}]}`,
		"missing rules":    `{"policy_id": "p"}`,
		"missing rule_id":  `{"rules": [{"description": "d", "condition": "true"}]}`,
		"condition number": `{"rules": [{"rule_id": "r", "description": "d", "condition": 1}]}`,
		"tool categories":  `{"tool_categories": {"Acme_Pay": ["money", "outbound"], "lookup": []}, "rules": []}`,
		"categories array": `{"tool_categories": ["money"], "rules": []}`,
		"category unknown": `{"tool_categories": {"pay": ["payments"]}, "rules": []}`,
		"category a text":  `{"tool_categories": {"pay": "money"}, "rules": []}`,
		"category no name": `{"tool_categories": {"": ["money"]}, "rules": []}`,
		"judge":            `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": {"question": "q", "on_error": "allow", "timeout": "2s"}}]}`,
		"judge defaults":   `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": {}}]}`,
		"judge on_error":   `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": {"on_error": "skip"}}]}`,
		"judge unknown":    `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": {"model": "m"}}]}`,
		"judge a text":     `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": "yes"}]}`,
		"judge bad time":   `{"rules": [{"rule_id": "r", "description": "d", "condition": "true", "judge": {"timeout": "soon"}}]}`,
	}
	ts, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range ts {
		docs["template "+tp.Name] = string(tp.Raw)
	}
	raw, err := os.ReadFile("../examples/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	docs["examples/policy.json"] = string(raw)
	for name, doc := range docs {
		_, loadErr := policies.Parse([]byte(doc), name, "p")
		schemaErr := validate(s, []byte(doc))
		if (loadErr == nil) != (schemaErr == nil) {
			t.Errorf("%s: loader says %v, schema says %v", name, loadErr, schemaErr)
		}
	}
}
