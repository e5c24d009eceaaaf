package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// binary builds troyctl once for the tests that run it as a separate process.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "troyctl-bin")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "troyctl")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(repoRoot, "cmd", "troyctl")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, msg)
	}
	return out, nil
})

func troyctlBinary(t testing.TB) string {
	t.Helper()
	path, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// process is troyctl running on its own.
type process struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	mu     *sync.Mutex
}

// startServe starts `troyctl serve` without NATS authentication, for tests of what serve
// does with anonymous clients, and waits until it serves.
func startServe(t testing.TB, args ...string) *process {
	t.Helper()
	return startServeCmd(t, exec.Command(troyctlBinary(t), append([]string{"serve", "--metrics", "", "--insecure-no-auth"}, args...)...))
}

// startServeCmd starts a command line that runs `troyctl serve` and waits until it serves.
func startServeCmd(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: &strings.Builder{}, mu: &sync.Mutex{}}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && strings.HasPrefix(sc.Text(), "troy serving on ") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("serve did not start:\n%s", p.log())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not start in 30s:\n%s", p.log())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func countReports(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
		if d != nil && d.Name() == "audit.json" {
			n++
		}
		return nil
	})
	return n
}

// A deployment survives being killed: serve runs as its own process, a batch of 1,000
// traces is sent to it, serve is killed with SIGKILL midway and started again, and every
// trace still gets exactly one report, with the violations the in-process engine finds.
func TestServeSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	serveArgs := []string{"--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal"}

	const n = 1000
	g := tracegen.New(tracegen.Options{Steps: 8, Seed: 42, BadRate: 0.1})
	var lines []string
	want := map[string]*schemas.AuditResult{}
	c, err := loadPolicy(&app{stderr: io.Discard}, "minimal")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		tr := g.Trace()
		tr.TraceID = fmt.Sprintf("run.%04d", i)
		raw, _ := json.Marshal(tr)
		lines = append(lines, string(raw))
		want[tr.TraceID] = audit.Result(c, tr, "")
	}
	traces := filepath.Join(dir, "traces.jsonl")
	if err := os.WriteFile(traces, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	serve := startServe(t, serveArgs...)
	batch := exec.Command(troyctlBinary(t), "batch", traces, "minimal", "--nats", url, "-o", filepath.Join(dir, "out"), "-q", "--json", "-c", "16")
	var batchOut, batchErr strings.Builder
	batch.Stdout, batch.Stderr = &batchOut, &batchErr
	if err := batch.Start(); err != nil {
		t.Fatal(err)
	}
	reports := filepath.Join(data, "reports")
	deadline := time.Now().Add(60 * time.Second)
	for countReports(reports) < n/4 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the kill:\n%s", serve.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := serve.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = serve.cmd.Wait()
	killedAt := countReports(reports)
	t0 := time.Now()
	serve = startServe(t, serveArgs...)
	t.Logf("restarted in %v", time.Since(t0))

	done := make(chan error, 1)
	go func() { done <- batch.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("batch: %v\n%s\nserve:\n%s", err, batchErr.String(), serve.log())
		}
	case <-time.After(180 * time.Second):
		_ = batch.Process.Kill()
		t.Fatalf("batch did not finish:\n%s\nserve:\n%s", batchErr.String(), serve.log())
	}
	t.Logf("batch done %v after the restart", time.Since(t0))
	if killedAt >= n {
		t.Fatalf("serve was killed after it had finished (%d reports); the test proves nothing", killedAt)
	}

	// The batch's own audits equal the in-process engine's.
	var sum struct {
		Rows []struct {
			TraceID string `json:"trace_id"`
			Report  string `json:"report"`
		} `json:"results"`
		Skipped []schemas.SkippedFile `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(batchOut.String()), &sum); err != nil {
		t.Fatalf("batch output: %v\n%s", err, batchOut.String())
	}
	if len(sum.Rows) != n || len(sum.Skipped) != 0 {
		t.Fatalf("batch audited %d traces and skipped %v", len(sum.Rows), sum.Skipped)
	}
	for _, row := range sum.Rows {
		raw, err := os.ReadFile(strings.TrimSuffix(row.Report, "report.md") + "audit.json")
		if err != nil {
			t.Fatal(err)
		}
		var got schemas.AuditResult
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		w := want[row.TraceID]
		if got.RiskScore != w.RiskScore || len(got.Violations) != len(w.Violations) {
			t.Fatalf("%s: risk %d with %d violations, in process %d with %d", row.TraceID, got.RiskScore, len(got.Violations), w.RiskScore, len(w.Violations))
		}
	}

	// The deployment reported each trace exactly once, with every step.
	deadline = time.Now().Add(60 * time.Second)
	for countReports(reports) < n {
		if time.Now().After(deadline) {
			t.Fatalf("server reports: %d of %d\n%s", countReports(reports), n, serve.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := bus.Open(context.Background(), bus.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for kind, per := range map[event.Kind]int{event.KindReported: 1, event.KindEvaluated: 1, event.KindScored: 1} {
		events, err := b.Read(context.Background(), bus.ResultsStream, event.ResultFilter(kind), math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, e := range events {
			var ref event.TraceRef
			if err := json.Unmarshal(e.Data, &ref); err != nil {
				t.Fatal(err)
			}
			count[ref.TraceID]++
		}
		if len(count) != n {
			t.Fatalf("%s events for %d traces, want %d", kind, len(count), n)
		}
		for id, k := range count {
			if k != per {
				t.Fatalf("trace %s has %d %s events", id, k, kind)
			}
		}
	}
	for id, w := range want {
		raw, err := os.ReadFile(filepath.Join(reports, schemas.Token(w.Trace.AgentName), schemas.Token(id), "audit.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got schemas.AuditResult
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Trace.Steps) != len(w.Trace.Steps) || len(got.Violations) != len(w.Violations) || got.RiskScore != w.RiskScore {
			t.Fatalf("server report of %s: %d steps, %d violations, risk %d; want %d, %d, %d",
				id, len(got.Trace.Steps), len(got.Violations), got.RiskScore, len(w.Trace.Steps), len(w.Violations), w.RiskScore)
		}
	}
	// Every report verifies: the server's with the key in its data directory, across
	// the kill, and the batch's with the one-shot key.
	var served, batched []string
	_ = filepath.WalkDir(reports, func(p string, d os.DirEntry, _ error) error {
		if d != nil && (d.Name() == "audit.json" || d.Name() == "report.md") {
			served = append(served, p)
		}
		return nil
	})
	for _, row := range sum.Rows {
		batched = append(batched, row.Report, strings.TrimSuffix(row.Report, "report.md")+"audit.json")
	}
	if r := troyctl(t, append([]string{"verify", "--data-dir", data, "--json"}, served...)...); r.code != 0 || len(served) != 2*n {
		t.Errorf("verify %d server reports: exit %d %s", len(served), r.code, r.stderr)
	}
	if r := troyctl(t, append([]string{"verify", "--json"}, batched...)...); r.code != 0 {
		t.Errorf("verify the batch's reports: exit %d %s", r.code, r.stderr)
	}
	t.Logf("killed after %d of %d server reports", killedAt, n)
}

// Two guard processes on one server answer one session's checks between them, and rules
// that look back still see the whole history: every decision equals the in-process guard's.
func TestTwoGuardProcessesShareSessions(t *testing.T) {
	dir := t.TempDir()
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal")
	startServe(t, "--nats", url, "--only", "guard")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: url, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The second instance has joined the service once two answer a ping.
	deadline := time.Now().Add(20 * time.Second)
	for guardInstances(t, b) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second guard instance did not join")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := loadPolicy(&app{stderr: io.Discard}, "minimal")
	if err != nil {
		t.Fatal(err)
	}
	conn := agent.New(b.Conn())
	type step struct {
		action string
		meta   map[string]any
	}
	script := []step{
		{"get_customer", map[string]any{"data_classification": "pii"}},
		{"search_docs", nil},
		{"summarize", nil},
		{"http_post", map[string]any{"network_zone": "external"}}, // blocked: personal data earlier
		{"create_payment", map[string]any{"requires_approval": true}},
		{"list_services", nil},
	}
	for s := range 30 {
		session := fmt.Sprintf("session %d", s)
		remote := conn.Guard(agent.GuardOptions{Session: session, Agent: "bot", Mode: "enforce"})
		local, err := c.NewGuard(evaluator.GuardOptions{TraceID: session, AgentName: "bot"})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range script {
			got, err := remote.Check(ctx, st.action, nil, st.meta, "")
			var blocked *agent.BlockedError
			if err != nil && !errors.As(err, &blocked) {
				t.Fatalf("%s check %d: %v", session, i, err)
			}
			want, err := local.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: st.action, Metadata: st.meta}})
			if err != nil {
				t.Fatal(err)
			}
			if got.Allowed != want.Allowed || got.RiskScore != want.RiskScore || len(got.Violations) != len(want.Violations) || got.StepID != want.StepID {
				t.Fatalf("%s check %d (%s): got %+v, want %+v", session, i, st.action, got, want)
			}
		}
		if err := remote.End(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := answeredBy(t, b); n < 2 {
		t.Fatalf("only %d guard instance answered", n)
	}
}

// guardInstances counts the guard instances answering a ping.
func guardInstances(t *testing.T, b *bus.Bus) int { return len(collect(t, b, "$SRV.PING.troy-guard")) }

// answeredBy counts the guard instances that answered at least one check.
func answeredBy(t *testing.T, b *bus.Bus) int {
	n := 0
	for _, raw := range collect(t, b, "$SRV.STATS.troy-guard") {
		var st struct {
			Endpoints []struct {
				Name     string `json:"name"`
				Requests int    `json:"num_requests"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		for _, e := range st.Endpoints {
			if e.Name == "check" && e.Requests > 0 {
				n++
			}
		}
	}
	return n
}

// collect gathers every reply to a request for a short while.
func collect(t *testing.T, b *bus.Bus, subject string) [][]byte {
	t.Helper()
	nc := b.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return out
		}
		out = append(out, m.Data)
	}
}

// troyctl check --nats asks the running guard service and records the step in its session.
func TestCheckAgainstARunningGuard(t *testing.T) {
	dir := t.TempDir()
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal")
	policy := example(t, "policy.json")
	r := troyctl(t, "check", policy, "-a", "read", "--metadata", `{"data_classification": "pii"}`, "--nats", url, "--session", "s1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "check", policy, "-a", "bash", "--metadata", `{"permission_level": "admin"}`, "--nats", url, "--session", "s1")
	if r.code != 2 || !strings.Contains(r.stdout, "privileged-escalation-guard") || !strings.Contains(r.stdout, `"step_id": "step-1"`) {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}
