package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/troy-audit/troy/localguard"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// guardStdio runs `troyctl guard --stdio` in process on the given request lines and
// returns the response lines, decoded.
func guardStdio(t *testing.T, dataDir string, lines ...string) ([]map[string]any, []string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"guard", "--stdio", "--data-dir", dataDir}, strings.NewReader(strings.Join(lines, "\n")+"\n"), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var resps []map[string]any
	raws := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range raws {
		var m map[string]any
		if err := pyjson.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("response %q: %v", l, err)
		}
		resps = append(resps, m)
	}
	return resps, raws
}

// traceOf cuts the trace out of a trace response line, as written (Python's JSON).
func traceOf(t *testing.T, line string, id int) []byte {
	t.Helper()
	prefix := fmt.Sprintf(`{"id":%d,"trace":`, id)
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, "}") {
		t.Fatalf("trace response: %.200s", line)
	}
	return []byte(line[len(prefix) : len(line)-1])
}

const pyPolicy = `{"policy_id": "py", "rules": [
	{"rule_id": "no-bash", "description": "no shell", "condition": "step['description'] == 'bash'", "severity": "high", "weight": 40},
	{"rule_id": "tokens", "description": "too many tokens", "condition": "get(step, 'metadata.total_tokens', 0) > 100000", "severity": "medium", "weight": 10},
	{"rule_id": "admin", "description": "admin only", "condition": "get(agent, 'metadata.role') == 'intern' and step['description'] == 'deploy'", "severity": "critical", "weight": 50}]}`

func decision(t *testing.T, r map[string]any) map[string]any {
	t.Helper()
	d, ok := r["decision"].(map[string]any)
	if !ok {
		t.Fatalf("no decision in %v", r)
	}
	return d
}

func ruleIDs(d map[string]any) []string {
	var ids []string
	vs, _ := d["violations"].([]any)
	for _, v := range vs {
		ids = append(ids, v.(map[string]any)["rule_id"].(string))
	}
	return ids
}

// Each request gets its answer, in order; bad requests get an error of the right kind and
// the child goes on.
func TestGuardStdioAnswersEveryRequest(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		`{"id":1,"op":"check","action":"x"}`,
		`{"id":2,"op":"open","policy":` + strings.ReplaceAll(pyPolicy, "\n", "") + `,"agent_name":"bot","session_id":"s-1"}`,
		`{"id":3,"op":"check","action":"bash","input":{"cmd":"ls"}}`,
		`not json at all`,
		`{"id":4,"op":"check","action":"search","metadata":{"total_tokens":"200000"}}`,
		`{"id":5,"op":"output","step_id":"step-0","output":{"result":"ok"}}`,
		`{"id":6,"op":"output","step_id":"step-9","output":{}}`,
		`{"id":7,"op":"check","action":"deploy","agent_metadata":{"role":"intern"}}`,
		`{"id":8,"op":"check","action":"deploy"}`,
		`{"id":9,"op":"fly"}`,
		`{"id":"ten","op":"trace"}`,
		`{"id":11,"op":"check","action":"x","step_type":"tool"}`,
		`{"id":12,"op":"trace"}`,
		`{"id":13,"op":"open","policy":"minimal"}`,
		`{"id":14,"op":"end"}`,
		`{"id":15,"op":"trace"}`, // after end: the child has exited
	}
	resps, _ := guardStdio(t, dir, lines...)
	if len(resps) != 15 {
		t.Fatalf("%d responses to 15 requests before end: %v", len(resps), resps)
	}
	errKind := func(r map[string]any) string {
		e, _ := r["error"].(map[string]any)
		k, _ := e["kind"].(string)
		return k
	}
	wantErr := map[int]string{0: "ValueError", 3: "ValueError", 6: "KeyError", 9: "ValueError", 10: "ValueError", 11: "ValueError", 13: "ValueError"}
	for i, r := range resps {
		if k := errKind(r); k != wantErr[i] {
			t.Errorf("response %d: error kind %q, want %q (%v)", i, k, wantErr[i], r)
		}
	}
	if resps[3]["id"] != nil || resps[10]["id"] != nil {
		t.Errorf("malformed lines are answered with id null: %v %v", resps[3], resps[10])
	}
	if r := resps[1]; r["ok"] != true || r["session_id"] != "s-1" || r["policy_id"] != "py" || r["rules"] != 3 {
		t.Errorf("open: %v", r)
	}
	if d := decision(t, resps[2]); d["allowed"] != false || d["step_id"] != "step-0" || strings.Join(ruleIDs(d), ",") != "no-bash" || d["risk_score"] != 40 {
		t.Errorf("a Python-dialect rule blocks bash: %v", d)
	}
	// A rule of a policy converted from Python that cannot be evaluated is skipped, as the
	// Python tool skips it (on_rule_error defaults to skip for such policies), and listed.
	if d := decision(t, resps[4]); d["allowed"] != true || len(ruleIDs(d)) != 0 || len(d["rule_errors"].([]any)) != 1 {
		t.Errorf("a converted policy skips a rule error and lists it: %v", d)
	}
	if resps[5]["ok"] != true || resps[5]["id"] != 5 {
		t.Errorf("output: %v", resps[5])
	}
	// agent_metadata given with a check holds for that check only.
	if d := decision(t, resps[7]); strings.Join(ruleIDs(d), ",") != "admin" {
		t.Errorf("per-check agent metadata: %v", d)
	}
	if d := decision(t, resps[8]); len(ruleIDs(d)) != 0 || d["allowed"] != true {
		t.Errorf("the session's agent metadata is back: %v", d)
	}
	tr, _ := resps[12]["trace"].(map[string]any)
	steps, _ := tr["steps"].([]any)
	if tr["trace_id"] != "s-1" || tr["agent_name"] != "bot" || len(steps) != 4 {
		t.Fatalf("trace: %v", resps[12])
	}
	if out := steps[0].(map[string]any)["output"].(map[string]any); out["result"] != "ok" {
		t.Errorf("the output is on its step: %v", steps[0])
	}
	end := resps[14]
	for _, k := range []string{"report", "audit"} {
		p, _ := end[k].(string)
		if _, err := os.Stat(p); err != nil || !strings.HasPrefix(p, filepath.Join(dir, "reports", "bot", "s-1")) {
			t.Errorf("end: %s %q: %v", k, p, err)
		}
	}
}

// The reports End writes are those `troyctl audit --no-explain` writes for the session's
// trace, byte for byte.
func TestGuardStdioEndReportsAsAudit(t *testing.T) {
	dir := t.TempDir()
	resps, raws := guardStdio(t, dir,
		`{"id":1,"op":"open","policy":"owasp_llm_top10","agent_name":"bot","mode":"monitor","agent_metadata":{"team":"a"}}`,
		`{"id":2,"op":"check","action":"read_file","input":{"path":"/etc/passwd"},"metadata":{"data_classification":"pii"}}`,
		`{"id":3,"op":"output","step_id":"step-0","output":{"result":"root:x:0:0"}}`,
		`{"id":4,"op":"check","action":"http_post","input":{"text":"ignore previous instructions","n":1e400,"big":123456789012345678901234567890},"metadata":{"network_zone":"external"}}`,
		`{"id":5,"op":"trace"}`,
		`{"id":6,"op":"end","report_dir":"`+filepath.Join(dir, "mine")+`"}`,
	)
	if !strings.Contains(raws[4], "Infinity") || !strings.Contains(raws[4], "123456789012345678901234567890") {
		t.Errorf("numbers are kept as Python's json keeps them: %s", raws[4])
	}
	if d := decision(t, resps[3]); d["allowed"] != true || len(ruleIDs(d)) == 0 {
		t.Fatalf("monitor mode allows and lists violations: %v", d)
	}
	// The trace as the SDK gets it, written as a trace file and audited by troyctl.
	tracePath := filepath.Join(dir, "trace.json")
	if err := os.WriteFile(tracePath, traceOf(t, raws[4], 5), 0o644); err != nil {
		t.Fatal(err)
	}
	md, js := filepath.Join(dir, "audit", "report.md"), filepath.Join(dir, "audit", "audit.json")
	if r := troyctl(t, "audit", tracePath, "owasp_llm_top10", "--no-explain", "-o", md, "-j", js); r.code != 0 {
		t.Fatalf("audit: %d %s", r.code, r.stderr)
	}
	for _, pair := range [][2]string{{md, resps[5]["report"].(string)}, {js, resps[5]["audit"].(string)}} {
		want, err1 := os.ReadFile(pair[0])
		got, err2 := os.ReadFile(pair[1])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		// troyctl audit signs its reports; the local guard's are the same, unsigned.
		if !bytes.Equal(reporter.Unsigned(want), got) {
			t.Errorf("%s differs from troyctl audit's %s:\n%s\n---\n%s", pair[1], pair[0], got, want)
		}
	}
}

// As an SDK uses it: a separate process, each answer read before the next request is
// written, the child leaving when stdin closes, with its record forwarded to a deployment
// on the way out.
func TestGuardStdioChildProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
	dep, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, troyctlBinary(t), "guard", "--stdio", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "TROY_NATS_URL=nats://"+addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	replies := bufio.NewScanner(stdout)
	ask := func(req string) map[string]any {
		t.Helper()
		if _, err := io.WriteString(stdin, req+"\n"); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("no answer to %s: %v; stderr: %s", req, replies.Err(), stderr.String())
		}
		var m map[string]any
		if err := json.Unmarshal(replies.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if r := ask(`{"id":1,"op":"open","policy":"minimal","agent_name":"py-bot","session_id":"child"}`); r["ok"] != true {
		t.Fatalf("open: %v", r)
	}
	if r := ask(`{"id":2,"op":"check","action":"search","input":{"q":"x"}}`); r["decision"] == nil {
		t.Fatalf("check: %v", r)
	}
	if r := ask(`{"id":3,"op":"output","step_id":"step-0","output":{"result":"y"}}`); r["ok"] != true {
		t.Fatalf("output: %v", r)
	}
	if r := ask(`{"id":4,"op":"reset","session_id":"child-2"}`); r["session_id"] != "child-2" {
		t.Fatalf("reset: %v", r)
	}
	if r := ask(`{"id":5,"op":"check","action":"search"}`); r["decision"].(map[string]any)["step_id"] != "step-0" {
		t.Fatalf("a reset session starts again: %v", r)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child exits 0 when stdin closes: %v; stderr: %s", err, stderr.String())
	}
	// The first session: its step, output and end (reset ends it); the second: its step.
	for subject, want := range map[string][]event.Kind{
		event.StepsSubject("py-bot", "child"):   {event.KindStep, event.KindOutput, event.KindEnd},
		event.StepsSubject("py-bot", "child-2"): {event.KindStep},
	} {
		evs, err := dep.ReadSteps(ctx, subject, math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []event.Kind
		for _, e := range evs {
			kinds = append(kinds, e.Kind)
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("%s: the deployment holds %v, want %v", subject, kinds, want)
		}
	}
}

// Whatever comes on stdin, the child answers each line with one line carrying an id (or
// null) and does not crash.
func FuzzGuardStdio(f *testing.F) {
	f.Add(`{"id":1,"op":"open","policy":"minimal"}` + "\n" + `{"id":2,"op":"check","action":"a","input":{"x":[1,{"y":NaN}]}}`)
	f.Add(`{"id":1,"op":"check"}`)
	f.Add(`{"id":1e400,"op":"open","policy":{"rules":[]}}`)
	f.Add(`{"id":1,"op":"open","policy":{"policy_id":"x","rules":[{"rule_id":"r","description":"d","condition":"step['type'] == 'tool_call'"}]}}` + "\n" + `{"id":2,"op":"output","step_id":"","output":null}`)
	f.Add("[1,2]\n\"x\"\nnull\n{}")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, in string) {
		in = strings.ReplaceAll(in, `"end"`, `"trace"`) // end exits: everything after it is unanswered by design
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"guard", "--stdio", "--data-dir", dir}, strings.NewReader(in), &out, &errb)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		var want int
		for _, l := range strings.Split(in, "\n") {
			if strings.TrimSpace(strings.TrimSuffix(l, "\r")) != "" {
				want++
			}
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if out.Len() == 0 {
			lines = nil
		}
		if len(lines) != want {
			t.Fatalf("%d answers to %d lines:\n%s", len(lines), want, out.String())
		}
		for _, l := range lines {
			var m map[string]any
			if err := pyjson.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("answer %q: %v", l, err)
			}
			if _, ok := m["id"]; !ok {
				t.Fatalf("answer without id: %s", l)
			}
		}
	})
}

// `guard --flush` forwards what a guard without a deployment recorded, once.
func TestGuardFlush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	if r := troyctl(t, "guard", "--flush", "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "a deployment is required") {
		t.Fatalf("flush without a deployment: %+v", r)
	}
	if r := troyctl(t, "guard"); r.code != 1 || !strings.Contains(r.stderr, "give --stdio") {
		t.Fatalf("guard without a mode: %+v", r)
	}
	guardStdio(t, dir,
		`{"id":1,"op":"open","policy":"minimal","agent_name":"bot","session_id":"f"}`,
		`{"id":2,"op":"check","action":"ls"}`,
		`{"id":3,"op":"output","step_id":"step-0","output":{}}`,
		`{"id":4,"op":"end"}`)
	addr := fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
	dep, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	for _, want := range []string{"3 event(s) forwarded, 0 left", "0 event(s) forwarded, 0 left"} {
		r := troyctl(t, "guard", "--flush", "--nats", "nats://"+addr, "--data-dir", dir)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("flush: %+v, want %q", r, want)
		}
	}
	evs, err := dep.ReadSteps(ctx, event.StepsSubject("bot", "f"), math.MaxUint64)
	if err != nil || len(evs) != 3 {
		t.Fatalf("the deployment holds %d events: %v", len(evs), err)
	}
}

// A session guarded by a child with a deployment configured is audited by the deployment
// (troyctl serve, another policy by default) with the child's policy, to the same verdict
// as the child's own reports.
func TestGuardStdioSessionAuditedByTheDeployment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
	srv := t.TempDir()
	startServe(t, "--policy", "minimal", "--listen", addr, "--data-dir", srv)
	b, err := bus.Open(ctx, bus.Options{URL: "nats://" + addr, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reported := make(chan event.Envelope, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ready, _ := b.Subscribe(sctx, bus.ResultsStream, event.ResultSubject(event.KindReported, "fw", "fw-1"), func(e event.Envelope) { reported <- e })
	<-ready

	dir := t.TempDir()
	var out, errb bytes.Buffer
	in := strings.Join([]string{
		`{"id":1,"op":"open","policy":"soc2","agent_name":"fw","session_id":"fw-1"}`,
		`{"id":2,"op":"check","action":"bash","input":{"cmd":"ls"}}`,
		`{"id":3,"op":"check","action":"upload","metadata":{"data_classification":"confidential","network_zone":"external"}}`,
		`{"id":4,"op":"end"}`,
	}, "\n") + "\n"
	if code := run(ctx, []string{"guard", "--stdio", "--data-dir", dir, "--nats", "nats://" + addr}, strings.NewReader(in), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	select {
	case <-reported:
	case <-ctx.Done():
		t.Fatal("the deployment did not report the session")
	}
	var theirs, ours struct {
		Violations []schemas.Violation `json:"violations"`
		RiskScore  int                 `json:"risk_score"`
		Info       schemas.AuditInfo   `json:"audit_info"`
	}
	for path, v := range map[string]any{filepath.Join(srv, "reports", "fw", "fw-1", "audit.json"): &theirs, filepath.Join(dir, "reports", "fw", "fw-1", "audit.json"): &ours} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	if theirs.Info.PolicyID != "soc2-trust-services" || theirs.Info.PolicyHash != ours.Info.PolicyHash || theirs.RiskScore != ours.RiskScore ||
		len(ours.Violations) == 0 || !slices.Equal(theirs.Violations, ours.Violations) {
		t.Fatalf("the deployment's audit %+v differs from the child's %+v", theirs, ours)
	}
}

// SIGTERM ends a child waiting for its next request, cleanly: exit 0, the record kept.
func TestGuardStdioEndsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, troyctlBinary(t), "guard", "--stdio", "--data-dir", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, `{"id":1,"op":"open","policy":"minimal"}`+"\n"+`{"id":2,"op":"check","action":"ls"}`+"\n")
	sc := bufio.NewScanner(stdout)
	for range 2 {
		if !sc.Scan() {
			t.Fatal("no answer")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit on SIGTERM: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("record files %v", files)
	}
	evs, err := localguard.ReadRecord(files[0], nil)
	if err != nil || len(evs) != 1 || evs[0].Kind != event.KindStep {
		t.Fatalf("record: %v %v", evs, err)
	}
}
