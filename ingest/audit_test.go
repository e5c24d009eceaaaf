package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeAuditErrors(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{`{"violations": []}`, `trace: missing`},
		{`{"trace": null}`, `trace: missing`},
		{`{"trace": {"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool"}]}}`, `trace.steps[0].type`},
		{`{"trace": {"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s", "type": "tool_call", "description": "d"}]}, "risk_score": "high"}`, `audit fields`},
		{`not json`, "not an audit document"},
	} {
		if _, err := DecodeAudit([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.doc, err, tt.want)
		}
	}
}

// An audit.json as the Python tool writes it: the trace is validated as a trace file is,
// and the other fields are kept.
func TestLoadAudit(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "audit.json", []byte(`{"trace": `+goodTrace+`,
		"violations": [{"rule_id": "r", "rule_description": "d", "severity": "high", "step_id": "s2", "step_index": 1, "details": "x"}],
		"risk_score": 40}`))
	a, err := LoadAudit(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.Trace.TraceID != "t1" || len(a.Trace.Steps) != 2 || a.RiskScore != 40 || len(a.Violations) != 1 || a.Violations[0].StepID != "s2" {
		t.Fatalf("audit %+v", a)
	}
	if a.Explanations == nil {
		t.Fatal("explanations should be an empty list, not nil")
	}
	bad := write(t, dir, "bad.json", []byte(`{"trace": {"trace_id": 3}}`))
	if _, err := LoadAudit(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": ") || !strings.Contains(err.Error(), "trace.trace_id") {
		t.Fatalf("got %v, want the file and the path in the trace", err)
	}
	if _, err := LoadAudit(filepath.Join(dir, "none.json")); !os.IsNotExist(err) {
		t.Fatalf("got %v, want not exist", err)
	}
}
