package reporter

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func ciPolicy() *policies.Policy {
	return &policies.Policy{PolicyID: "p", Rules: []policies.Rule{
		{RuleID: "r1", Description: "No <shell>", Severity: "critical", Weight: 50},
		{RuleID: "r2", Description: "No SQL", Severity: "medium", Weight: 10},
		{RuleID: "r3", Description: "Quiet", Severity: "low", Weight: 5},
	}}
}

// ciTraces: a trace of one file with a violation and a rule error at its second step, a
// .jsonl record without violations.
func ciTraces() []Audited {
	r := result()
	r.Trace.Steps = append([]*schemas.Step{{StepID: "s0", Type: "llm_call"}}, r.Trace.Steps...)
	clean := &schemas.AuditResult{Trace: &schemas.Trace{TraceID: "t2", AgentName: "bot"}}
	clean.Normalize()
	return []Audited{{File: "traces/run one.json", Result: r}, {File: "/abs/runs.jsonl", Line: 7, Result: clean}}
}

// sarifSchema compiles the official SARIF 2.1.0 schema kept in testdata.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://example.invalid/sarif-schema-2.1.0.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSARIFValidAgainstTheSchema(t *testing.T) {
	schema := sarifSchema(t)
	for _, tc := range []struct {
		name   string
		traces []Audited
	}{
		{"violations", ciTraces()},
		{"no traces", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteSARIF(&buf, "v1.2.3", ciPolicy(), tc.traces); err != nil {
				t.Fatal(err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(inst); err != nil {
				t.Fatalf("not valid SARIF 2.1.0: %v\n%s", err, buf.String())
			}
		})
	}
	// The schema is strict enough to catch a mistake: a result without a message.
	bad := `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"troy"}},"results":[{"ruleId":"r1"}]}]}`
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(bad))
	if schema.Validate(inst) == nil {
		t.Fatal("the schema accepted a result without a message")
	}
}

func TestSARIFContent(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, "v1.2.3", ciPolicy(), ciTraces()); err != nil {
		t.Fatal(err)
	}
	var log sarifLog
	if err := json.Unmarshal(buf.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if log.Version != "2.1.0" || run.Tool.Driver.Name != "troy" || run.Tool.Driver.Version != "v1.2.3" || len(run.Tool.Driver.Rules) != 3 {
		t.Fatalf("log: %+v", log)
	}
	if r := run.Tool.Driver.Rules[1]; r.ID != "r2" || r.ShortDescription.Text != "No SQL" || r.DefaultConfiguration.Level != "warning" || r.Properties["severity"] != "medium" {
		t.Fatalf("rule metadata: %+v", r)
	}
	if len(run.Results) != 1 {
		t.Fatalf("one result per violation: %+v", run.Results)
	}
	res := run.Results[0]
	loc := res.Locations[0]
	if res.RuleID != "r1" || res.RuleIndex != 0 || res.Level != "error" ||
		loc.PhysicalLocation.ArtifactLocation.URI != "traces/run%20one.json" ||
		loc.LogicalLocations[0].FullyQualifiedName != "steps[1]" || loc.LogicalLocations[0].Name != "s1" ||
		!strings.Contains(res.Message.Text, "violated at step s1") || res.PartialFingerprints["troyViolation/v1"] == "" {
		t.Fatalf("result: %+v", res)
	}
}

func TestSARIFLocations(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"run.json", "run.json"},
		{"./a/b.jsonl", "a/b.jsonl"},
		{"/abs/dir/run.json", "file:///abs/dir/run.json"},
		{"with space.json", "with%20space.json"},
	} {
		if got := fileURI(tc.path); got != tc.want {
			t.Errorf("fileURI(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestJUnitStructure(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, ciPolicy(), ciTraces()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "<?xml") {
		t.Fatalf("no XML header:\n%s", buf.String())
	}
	var got JUnitSuites
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if got.Tests != 6 || got.Failures != 1 || got.Errors != 1 || len(got.Suites) != 2 {
		t.Fatalf("totals: %+v", got)
	}
	s := got.Suites[0]
	if s.Name != "t1 (traces/run one.json)" || s.Tests != 3 || s.Failures != 1 || s.Errors != 1 || got.Suites[1].Name != "t2 (/abs/runs.jsonl:7)" {
		t.Fatalf("suite: %+v", s)
	}
	c := s.Cases[0]
	if c.Name != "r1" || c.ClassName != "troy.p" || c.Failure == nil || c.Failure.Type != "critical" ||
		!strings.Contains(c.Failure.Message, "No <shell>") || !strings.Contains(c.Failure.Text, "step s1") {
		t.Fatalf("failing case: %+v", c)
	}
	if s.Cases[1].Error == nil || !strings.Contains(s.Cases[1].Error.Message, "cannot fetch x | y") {
		t.Fatalf("rule error: %+v", s.Cases[1])
	}
	if s.Cases[2].Failure != nil || s.Cases[2].Error != nil {
		t.Fatalf("a rule without violations passes: %+v", s.Cases[2])
	}
	props := map[string]string{}
	for _, p := range s.Properties {
		props[p.Name] = p.Value
	}
	if props["risk_score"] != "50" || props["trace_id"] != "t1" {
		t.Fatalf("properties: %v", props)
	}
}
