package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// A trace whose violations take megabytes (over the size of any one event) audits
// through `troyctl audit`, `troyctl batch` and a running serve, with the in-process
// engine's reports.
func TestLongTraceThroughEveryWayIn(t *testing.T) {
	c, tr := longSetup(t, tracegen.Options{Steps: 5000, Seed: 12, BadRate: 0.05})
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
			if string(reporter.Unsigned(a)) != string(b) {
				t.Fatalf("%s: %s differs from the in-process engine's (%d and %d bytes)", way, f, len(a), len(b))
			}
		}
		// Signed, and verified with the one-shot key.
		if r := troyctl(t, "verify", filepath.Join(got, "audit.json"), filepath.Join(got, "report.md")); r.code != 0 {
			t.Fatalf("%s: verify: exit %d %s", way, r.code, r.stderr)
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

	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", "data", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if r := troyctl(t, "batch", "long.json", "all.json", "--nats", url, "-o", "remote", "-q"); r.code != 0 {
		t.Fatalf("batch --nats: exit %d: %s", r.code, r.stderr)
	}
	served := filepath.Join("data", "reports", schemas.Token(tr.AgentName), schemas.Token(tr.TraceID), "audit.json")
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
	if r := troyctl(t, "verify", "--data-dir", "data", served); r.code != 0 {
		t.Fatalf("serve's report: verify: exit %d %s", r.code, r.stderr)
	}
}

var longSteps = flag.Int("long-steps", 100_000, "steps of the trace BenchmarkLongTrace audits")

// BenchmarkLongTrace audits one long trace (-long-steps, 100,000 by default) with many
// violations against the seven templates merged, through `troyctl audit`, `troyctl batch`
// and a running serve, each a process of its own; it checks their reports against the
// in-process engine's and reports each process's peak resident memory:
//
//	go test ./cmd/troyctl -run XXX -bench LongTrace -benchtime 1x [-args -long-steps 20000]
func BenchmarkLongTrace(b *testing.B) {
	c, tr := longSetup(b, tracegen.Options{Steps: *longSteps, Seed: 12, BadRate: 0.16})
	raw, _ := os.ReadFile("long.json")
	t0 := time.Now()
	want := audit.Result(c, tr, "--no-explain")
	b.ReportMetric(time.Since(t0).Seconds(), "in-process-s")
	b.ReportMetric(float64(len(want.Violations)), "violations")
	b.ReportMetric(float64(len(raw))/(1<<20), "trace-MB")
	if err := reporter.WriteAudit(want, reporter.Dest{Markdown: "want/report.md", JSON: "want/audit.json"}); err != nil {
		b.Fatal(err)
	}
	wantJSON, _ := os.ReadFile("want/audit.json")
	bin := troyctlBinary(b)
	maxSize := fmt.Sprint(2 * len(raw))
	// runs runs troyctl and reports its time and peak memory.
	runs := func(name string, args ...string) {
		b.Helper()
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, stderr.String())
		}
		b.ReportMetric(time.Since(t0).Seconds(), name+"-s")
		b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, name+"-peak-MB")
	}
	same := func(name, path string) {
		b.Helper()
		got, err := os.ReadFile(path)
		if err != nil || string(reporter.Unsigned(got)) != string(wantJSON) {
			b.Fatalf("%s: audit.json differs from the in-process engine's (%d and %d bytes, %v)", name, len(got), len(wantJSON), err)
		}
	}
	for range b.N {
		runs("audit", "audit", "long.json", "all.json", "--no-explain", "--max-size", maxSize, "-o", "audit/report.md", "-j", "audit/audit.json")
		same("audit", "audit/audit.json")
		runs("batch", "batch", "long.json", "all.json", "--no-explain", "--max-size", maxSize, "-o", "batch", "-q")
		same("batch", "batch/long/audit.json")

		port := servetest.FreePort(b)
		serve := startServe(b, "--data-dir", "data", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
		runs("batch-nats", "batch", "long.json", "all.json", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", port), "--max-size", maxSize, "-o", "remote", "-q")
		served := filepath.Join("data", "reports", schemas.Token(tr.AgentName), schemas.Token(tr.TraceID), "audit.json")
		var got schemas.AuditResult
		for deadline := time.Now().Add(10 * time.Minute); ; {
			raw, err := os.ReadFile(served)
			if err == nil && json.Unmarshal(raw, &got) == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("serve wrote no report: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(got.Violations) != len(want.Violations) || got.RiskScore != want.RiskScore || len(got.Trace.Steps) != len(tr.Steps) {
			b.Fatalf("serve: %d violations, risk %d; in process %d, %d", len(got.Violations), got.RiskScore, len(want.Violations), want.RiskScore)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", serve.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var n float64
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), &n)
				b.ReportMetric(n/1024, "serve-peak-MB")
			}
		}
		_ = serve.cmd.Process.Kill()
		_ = serve.cmd.Wait()
		os.RemoveAll("data")
	}
}

// longSetup works in a fresh directory: it writes the seven templates merged to all.json
// and a generated trace to long.json, and returns the policy compiled and the trace as read
// back (with the numbers a trace file gives).
func longSetup(t testing.TB, opts tracegen.Options) (*evaluator.Compiled, *schemas.Trace) {
	t.Helper()
	t.Chdir(t.TempDir())
	if r := troyctl(t, "policies", "init", "-t", "agent_safety", "-t", "data_protection", "-t", "hipaa", "-t", "minimal",
		"-t", "owasp_llm_top10", "-t", "safe_browsing", "-t", "soc2", "-o", "all.json"); r.code != 0 {
		t.Fatalf("policies init: %s", r.stderr)
	}
	c, err := loadPolicy(&app{stderr: io.Discard}, "all.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(tracegen.New(opts).Trace())
	if err := os.WriteFile("long.json", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := ingest.LoadTrace(context.Background(), "long.json", ingest.Options{MaxSize: int64(2 * len(raw))})
	if err != nil {
		t.Fatal(err)
	}
	return c, tr
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
