package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

func compiled(t *testing.T) *evaluator.Compiled {
	t.Helper()
	p, err := policies.Parse([]byte(`{"policy_id": "p", "rules": [
		{"rule_id": "shell", "description": "shell", "condition": "step.description == 'bash'", "severity": "high", "weight": 30},
		{"rule_id": "pii-out", "description": "pii out", "condition": "step.metadata.data_classification == 'pii' and any(next_steps, .metadata.network_zone == 'external')", "severity": "critical", "weight": 50}]}`), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inProcess audits with the engine in this process, so that batches are tested without a
// pipeline.
type inProcess struct{ c *evaluator.Compiled }

func (a inProcess) Audit(_ context.Context, t *schemas.Trace) (*schemas.AuditResult, error) {
	return Result(a.c, t, ""), nil
}

func trace(id string, descs ...string) string {
	var steps []string
	for i, d := range descs {
		steps = append(steps, fmt.Sprintf(`{"step_id": "s%d", "type": "tool_call", "description": %q}`, i+1, d))
	}
	return fmt.Sprintf(`{"trace_id": %q, "agent_name": "bot", "steps": [%s]}`, id, strings.Join(steps, ","))
}

func TestResultScoresAndDescribes(t *testing.T) {
	c := compiled(t)
	tr, err := ingest.DecodeTrace([]byte(`{"trace_id": "t", "agent_name": "a", "steps": [
		{"step_id": "s1", "type": "tool_call", "description": "read", "metadata": {"data_classification": "pii"}},
		{"step_id": "s2", "type": "tool_call", "description": "bash", "metadata": {"network_zone": "external"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := Result(c, tr, "--no-explain")
	if r.RiskScore != 80 || len(r.Violations) != 2 || r.Violations[0].StepID != "s1" || r.Violations[1].RuleID != "shell" {
		t.Fatalf("result %+v", r)
	}
	if r.Info.PolicyID != "p" || r.Info.Rules != 2 || len(r.Info.PolicyHash) != 64 || r.Info.Explanations != "off" || r.Info.ExplanationsNote != "--no-explain" {
		t.Fatalf("info %+v", r.Info)
	}
	if r.Explanations == nil || r.Summary != nil {
		t.Fatalf("no explanations: empty list and null summary")
	}
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A batch reports the good traces and lists the bad inputs, whatever their order or kind.
func TestBatchKeepsGoingPastBadInputs(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	files := map[string][]byte{
		"a.json":      []byte(trace("ta", "bash")),
		"a.json.gz":   gz(t, trace("ta-gz", "ls")),
		"b.jsonl":     []byte(trace("tb1", "ls") + "\n" + `{"trace_id": "broken"}` + "\n" + trace("tb/3", "bash") + "\n"),
		"c.json":      []byte(`{"trace_id": "tc", "agent_name": "bot", "steps": [{"step_id": "s1", "type": "tool", "description": "x"}]}`),
		"d.json.gz":   []byte("not gzip"),
		"e.json":      []byte(trace("te", strings.Repeat("x", 500))),
		"policy.json": []byte(`{"rules": []}`),
		"notes.txt":   []byte("ignored"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(in, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inputs, err := Inputs([]string{in}, []string{filepath.Join(in, "policy.json")})
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) != 6 {
		t.Fatalf("inputs %v", inputs)
	}
	var progress []string
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	sg := &reporter.Signer{Key: key, Version: "test"}
	sum, err := Batch(context.Background(), inProcess{compiled(t)}, inputs, BatchOptions{
		Dir: out, Concurrency: 4, Ingest: ingest.Options{MaxSize: 400}, Signer: sg,
		Progress: func(p Progress) {
			s := fmt.Sprintf("%d:%s", p.Done, p.Name)
			if p.Err != nil {
				s += "!"
			}
			progress = append(progress, s)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantProgress := "1:a.json 2:a.json.gz 3:b.jsonl:1 4:b.jsonl:2! 5:b.jsonl:3 6:c.json! 7:d.json.gz! 8:e.json!"
	if got := strings.Join(progress, " "); got != wantProgress {
		t.Fatalf("progress in input order:\n got %s\nwant %s", got, wantProgress)
	}
	var ids, reports []string
	for _, r := range sum.Rows {
		ids = append(ids, r.TraceID)
		rel, _ := filepath.Rel(out, r.Report)
		reports = append(reports, rel)
	}
	if got := strings.Join(ids, ","); got != "ta,ta-gz,tb1,tb/3" {
		t.Fatalf("results %s", got)
	}
	if got := strings.Join(reports, ","); got != "a/report.md,a-2/report.md,b/000001-tb1/report.md,b/000003-tb_3/report.md" {
		t.Fatalf("report paths %s", got)
	}
	var skipped []string
	for _, s := range sum.Skipped {
		skipped = append(skipped, s.File+": "+s.Error)
	}
	want := []string{
		"b.jsonl:2: agent_name: required field is missing",
		`c.json: steps[0].type: "tool" is not one of llm_call, tool_call, decision, observation`,
		"d.json.gz: not a gzip file: unexpected EOF",
		"e.json: file is 609 bytes, over the 400 bytes limit (raise it with --max-size)",
	}
	if strings.Join(skipped, "\n") != strings.Join(want, "\n") {
		t.Fatalf("skipped:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(want, "\n"))
	}
	raw, err := os.ReadFile(filepath.Join(out, "batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b schemas.BatchResult
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 4 || len(b.Skipped) != 4 || b.Results[0].RiskScore != 30 {
		t.Fatalf("batch.json: %d results, %d skipped", len(b.Results), len(b.Skipped))
	}
	// Every report the batch wrote verifies with its key.
	pub := key.Public().(ed25519.PublicKey)
	for _, r := range reports {
		md, err1 := os.ReadFile(filepath.Join(out, r))
		js, err2 := os.ReadFile(filepath.Join(out, strings.Replace(r, "report.md", "audit.json", 1)))
		if err1 != nil || err2 != nil {
			t.Fatalf("missing reports of %s: %v %v", r, err1, err2)
		}
		if _, err := reporter.VerifyReport(md, pub); err != nil {
			t.Errorf("%s: %v", r, err)
		}
		if st, err := reporter.VerifyAudit(js, pub); err != nil || st.Report != reporter.ReportDigest(md) {
			t.Errorf("audit.json beside %s: %v", r, err)
		}
	}
}

func TestBatchOrderAndContentDoNotDependOnConcurrency(t *testing.T) {
	in := t.TempDir()
	var lines []string
	for i := range 200 {
		lines = append(lines, trace(fmt.Sprintf("t%03d", i), "ls", "bash", "cat"))
	}
	if err := os.WriteFile(filepath.Join(in, "many.jsonl"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, workers := range []int{1, 8} {
		out := t.TempDir()
		if _, err := Batch(context.Background(), inProcess{compiled(t)}, []string{filepath.Join(in, "many.jsonl")}, BatchOptions{Dir: out, Concurrency: workers}); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(out, "batch.json"))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(raw))
	}
	if outs[0] != outs[1] {
		t.Fatal("batch.json differs between 1 and 8 workers")
	}
}

func TestBatchStopsWhenCancelled(t *testing.T) {
	in := t.TempDir()
	var lines []string
	for i := range 50 {
		lines = append(lines, trace(fmt.Sprintf("t%d", i), "ls"))
	}
	if err := os.WriteFile(filepath.Join(in, "many.jsonl"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := t.TempDir()
	n := 0
	sum, err := Batch(ctx, inProcess{compiled(t)}, []string{filepath.Join(in, "many.jsonl")}, BatchOptions{Dir: out, Concurrency: 2, Progress: func(Progress) {
		n++
		if n == 5 {
			cancel()
		}
	}})
	if err == nil || sum == nil || len(sum.Rows) >= 50 {
		t.Fatalf("a cancelled batch stops early and says so: err %v, rows %d", err, len(sum.Rows))
	}
	var b schemas.BatchResult
	raw, _ := os.ReadFile(filepath.Join(out, "batch.json"))
	if json.Unmarshal(raw, &b) != nil || len(b.Results) != len(sum.Rows) {
		t.Fatalf("what was audited before the stop is kept in a valid batch.json")
	}
}

func TestInputsErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Inputs([]string{dir}, nil); err == nil || !strings.Contains(err.Error(), "no trace files (.json, .jsonl, .json.gz, .jsonl.gz) in "+dir) {
		t.Fatalf("got %v", err)
	}
	if _, err := Inputs([]string{filepath.Join(dir, "nope")}, nil); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("got %v", err)
	}
}
