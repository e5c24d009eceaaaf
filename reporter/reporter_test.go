package reporter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
)

func result() *schemas.AuditResult {
	r := &schemas.AuditResult{
		Trace:      &schemas.Trace{TraceID: "t1", AgentName: "bot", Steps: []*schemas.Step{{StepID: "s1", Type: "tool_call", Description: "x"}}},
		Violations: []schemas.Violation{{RuleID: "r1", RuleDescription: "No <shell>", StepID: "s1", Severity: "critical", Details: "Rule 'No <shell>' violated at step s1"}},
		RiskScore:  50,
		Info: &schemas.AuditInfo{PolicyID: "p", PolicyHash: "0123456789abcdef", Rules: 3, Explanations: "off", ExplanationsNote: "--no-explain",
			RuleErrors: []schemas.RuleError{{RuleID: "r2", Count: 2, FirstStep: "s1", FirstError: "cannot fetch x | y"}}},
	}
	r.Normalize()
	return r
}

func TestMarkdownHasTheSeedSections(t *testing.T) {
	r := result()
	r.Summary = &schemas.TraceSummary{Overview: "It ran.", KeyActions: []string{"ran"}}
	r.Explanations = []schemas.StepExplanation{{StepID: "s1", Summary: "Ran x.", Rationale: "needed", RiskFactors: []string{"shell"}}}
	md := Markdown(r)
	for _, want := range []string{
		"# Audit Report: bot\n\n**Trace ID:** t1\n**Risk Score:** 50/100\n**Steps Analyzed:** 1\n**Violations Found:** 1\n",
		"**Policy:** p (3 rules, sha256 0123456789ab)",
		"**Explanations:** off: --no-explain",
		"## Summary\n\nIt ran.\n\n### Key Actions\n- ran\n",
		"## Step Analysis\n\n### Step: s1\n\nRan x.\n\n**Why:** needed\n\n**Risk Factors:**\n- shell\n",
		"## Policy Violations\n\n### [CRITICAL] No <shell>\n\n- **Rule ID:** r1\n- **Step:** s1\n- **Details:** Rule 'No <shell>' violated at step s1\n",
		"| r2 | 2 | s1 | cannot fetch x \\| y |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	r.Violations = nil
	if !strings.Contains(Markdown(r), "No policy violations detected.") {
		t.Errorf("a clean report says so")
	}
}

func TestWriteAudit(t *testing.T) {
	dir := t.TempDir()
	md, js := filepath.Join(dir, "a", "report.md"), filepath.Join(dir, "b", "audit.json")
	if err := WriteAudit(result(), Dest{Markdown: md, JSON: js}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.AuditResult
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.RiskScore != 50 || back.Info.RuleErrors[0].Count != 2 || !strings.Contains(string(raw), "No <shell>") {
		t.Fatalf("audit.json: %s", raw)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "a")); len(entries) != 1 {
		t.Fatalf("no temporary files are left behind: %v", entries)
	}
	if DefaultDir(time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)) != filepath.Join("logs", "2026-02-15") {
		t.Errorf("default directory")
	}
}

func TestBatchWriter(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		dir := t.TempDir()
		bw, err := NewBatchWriter(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := bw.Add(result(), "f.json", filepath.Join(dir, "t", string(rune('a'+i)))); err != nil {
				t.Fatal(err)
			}
		}
		bw.Skip("bad.json", "steps: required field is missing")
		s, err := bw.Close()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(s.BatchJSON)
		if err != nil {
			t.Fatal(err)
		}
		var b schemas.BatchResult
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("batch.json with %d results is not valid JSON: %v\n%s", n, err, raw)
		}
		if len(b.Results) != n || len(b.Skipped) != 1 || b.Skipped[0].File != "bad.json" {
			t.Fatalf("batch.json: %+v", b)
		}
		// Streamed output is what encoding the whole batch at once would give.
		b.Results = append([]schemas.AuditResult{}, b.Results...)
		whole, err := JSON(&b)
		if err != nil {
			t.Fatal(err)
		}
		if string(whole) != string(raw) {
			t.Fatalf("streamed batch.json differs from the whole:\n%s\nvs\n%s", raw, whole)
		}
		md, err := os.ReadFile(s.Summary)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(md), "**Traces Skipped:** 1") || !strings.Contains(string(md), "- **bad.json**: steps: required field is missing") {
			t.Fatalf("summary.md:\n%s", md)
		}
		if n > 0 && !strings.Contains(string(md), "| t1 | bot | 1 | 1 | 50 | [report](<t/a/report.md>) |") {
			t.Fatalf("summary.md rows:\n%s", md)
		}
	}
}

// audit.json must stay byte for byte what encoding/json writes (the seed's format), whatever
// encoder writes it: unicode, HTML characters, nested input maps, numbers.
func TestJSONIsEncodingJSON(t *testing.T) {
	g := tracegen.New(tracegen.Options{Steps: 30, Seed: 11, BadRate: 0.3})
	for i := range 50 {
		r := result()
		r.Trace = g.Trace()
		r.Trace.Steps[0].Input = map[string]any{"html": "<a href='x'>&</a>", "unicode": "żółw \u2028 \U0001F600", "n": 1.5e-7, "big": 1e21, "int": 42, "list": []any{nil, true, "x"}}
		r.Normalize()
		got, err := JSON(r)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			a, b := string(got), want.String()
			n := 0
			for n < len(a) && n < len(b) && a[n] == b[n] {
				n++
			}
			t.Fatalf("result %d differs at byte %d:\n%q\nencoding/json:\n%q", i, n, a[max(0, n-80):min(len(a), n+80)], b[max(0, n-80):min(len(b), n+80)])
		}
	}
}
