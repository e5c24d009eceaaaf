package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// A trace whose violations take megabytes (over the size of any one event) audits
// through `troyctl audit`, `troyctl batch` and a running serve, with the in-process
// engine's reports.
func TestLongTraceThroughEveryWayIn(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if r := troyctl(t, "policies", "init", "-t", "agent_safety", "-t", "data_protection", "-t", "hipaa", "-t", "minimal",
		"-t", "owasp_llm_top10", "-t", "safe_browsing", "-t", "soc2", "-o", "all.json"); r.code != 0 {
		t.Fatalf("policies init: %s", r.stderr)
	}
	c, err := loadPolicy(&app{stderr: io.Discard}, "all.json")
	if err != nil {
		t.Fatal(err)
	}
	tr := tracegen.New(tracegen.Options{Steps: 5000, Seed: 12, BadRate: 0.05}).Trace()
	raw, _ := json.Marshal(tr)
	if err := os.WriteFile("long.json", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	want := audit.Result(c, tr, "--no-explain")
	if size := len(mustJSON(t, want.Violations)); size < 2<<20 {
		t.Fatalf("the violations take %d bytes: the test needs more than an event holds", size)
	}
	if err := reporter.WriteAudit(want, reporter.Dest{Markdown: "want/report.md", JSON: "want/audit.json"}); err != nil {
		t.Fatal(err)
	}
	same := func(way, got string) {
		t.Helper()
		for _, f := range []string{"report.md", "audit.json"} {
			a, err := os.ReadFile(filepath.Join(got, f))
			if err != nil {
				t.Fatalf("%s: %v", way, err)
			}
			b, _ := os.ReadFile(filepath.Join("want", f))
			if string(a) != string(b) {
				t.Fatalf("%s: %s differs from the in-process engine's (%d and %d bytes)", way, f, len(a), len(b))
			}
		}
	}

	if r := troyctl(t, "audit", "long.json", "all.json", "--no-explain", "-o", "audit/report.md", "-j", "audit/audit.json"); r.code != 0 {
		t.Fatalf("audit: exit %d: %s", r.code, r.stderr)
	}
	same("troyctl audit", "audit")

	if r := troyctl(t, "batch", "long.json", "all.json", "--no-explain", "-o", "batch", "-q"); r.code != 0 {
		t.Fatalf("batch: exit %d: %s", r.code, r.stderr)
	}
	same("troyctl batch", filepath.Join("batch", "long"))

	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", "data", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if r := troyctl(t, "batch", "long.json", "all.json", "--nats", url, "-o", "remote", "-q"); r.code != 0 {
		t.Fatalf("batch --nats: exit %d: %s", r.code, r.stderr)
	}
	served := filepath.Join("data", "reports", schemas.SubjectToken(tr.AgentName), schemas.SubjectToken(tr.TraceID), "audit.json")
	deadline := time.Now().Add(time.Minute)
	var got schemas.AuditResult
	for {
		raw, err := os.ReadFile(served)
		if err == nil && json.Unmarshal(raw, &got) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve wrote no report: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(mustJSON(t, got.Violations)) != string(mustJSON(t, want.Violations)) || got.RiskScore != want.RiskScore ||
		string(mustJSON(t, got.Trace)) != string(mustJSON(t, want.Trace)) {
		t.Fatalf("serve: %d violations, risk %d; in process %d, %d", len(got.Violations), got.RiskScore, len(want.Violations), want.RiskScore)
	}
	if !strings.Contains(string(mustJSON(t, got.Info)), want.Info.PolicyHash) {
		t.Fatalf("serve's report names another policy: %+v", got.Info)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
