package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// addressSpace is the limit the processes below run under: 2 GiB, in KiB for ulimit -v.
const addressSpace = 2 << 20

// limited is troyctl run with its address space limited, as a small machine or a
// container would: a condition that allocates without bound makes it fail at once.
func limited(t *testing.T, args ...string) *exec.Cmd {
	return exec.Command("sh", append([]string{"-c", fmt.Sprintf(`ulimit -v %d && exec "$0" "$@"`, addressSpace), troyctlBinary(t)}, args...)...)
}

// The two conditions that took troyctl down, as written: each certainly breaks a limit.
var (
	bigRepeat = `len(repeat(repeat("a", 999999), 999999)) > 0`
	nineAll   = func() string {
		c := "true"
		for range 9 {
			c = "all([1,2,3,4,5,6,7,8,9,10], " + c + ")"
		}
		return c
	}()
)

// policyDoc writes a policy of rules (id, condition) and returns its bytes.
func policyDoc(t *testing.T, rules ...[2]string) []byte {
	t.Helper()
	var rs []map[string]string
	for _, r := range rules {
		rs = append(rs, map[string]string{"rule_id": r[0], "description": r[0], "condition": r[1]})
	}
	doc, err := json.Marshal(map[string]any{"policy_id": "limits", "rules": rs})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// troyctl audit, as its own process in 2 GiB: a policy whose conditions certainly break a
// limit is refused at load, one line per rule; conditions that break limits only when
// they run are rule errors in the audit, and every other rule is evaluated.
func TestAuditUnderAnAddressSpaceLimit(t *testing.T) {
	dir := t.TempDir()
	trace := example(t, "traces", "pii-exfiltration.json")

	refused := writeFile(t, filepath.Join(dir, "refused.json"), policyDoc(t, [2]string{"big-repeat", bigRepeat}, [2]string{"nested", nineAll}))
	cmd := limited(t, "audit", trace, refused, "--no-explain")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("refused policy: %v\n%s", err, out)
	}
	want := []string{
		`troyctl: ` + refused + `: rule "big-repeat": condition: line 1, column 5: repeat of up to 999999x999999 bytes exceeds the 16 MiB limit`,
		`troyctl: ` + refused + `: rule "nested": condition: line 1, column 169: nested quantifiers run up to 10x10x10x10x10x10x10 = 10000000 iterations, over the limit of 1000000`,
	}
	if got := strings.TrimRight(string(out), "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("refused policy:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	atRunTime := writeFile(t, filepath.Join(dir, "run.json"), policyDoc(t,
		[2]string{"big-repeat", "len(repeat(repeat(step.description, 999999), 999999)) > 0"},
		[2]string{"nested", "let a = 1..(step_index+1000); all(a, all(a, all(a, all(a, true))))"},
		[2]string{"external", "step.metadata.network_zone == 'external'"},
	))
	cmd = limited(t, "audit", trace, atRunTime, "--no-explain", "--json")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, stderr.String())
	}
	var res auditOutput
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Violations) != 1 || res.Violations[0].RuleID != "external" {
		t.Fatalf("violations %+v", res.Violations)
	}
	if len(res.RuleErrors) != 2 {
		t.Fatalf("rule errors %+v", res.RuleErrors)
	}
	for _, e := range res.RuleErrors {
		if e.Count != res.Steps || !strings.Contains(e.FirstError, "limit") {
			t.Errorf("rule error %+v: want a limit at each of the %d steps", e, res.Steps)
		}
	}
}

// troyctl serve, as its own process in 2 GiB, with a policy in the bucket whose rules
// break limits (certainly, or when they run) and traces naming it: the rules are
// quarantined (logged once, counted in /metrics), each trace's result reports them as
// rule errors, the other rules still find their violations, and serve keeps serving.
func TestServeUnderAnAddressSpaceLimit(t *testing.T) {
	dir := t.TempDir()
	port, metricsPort := servetest.FreePort(t), servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	metrics := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	serve := startServeCmd(t, limited(t, "serve", "--data-dir", filepath.Join(dir, "data"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal", "--metrics", metrics, "--insecure-no-auth"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: url, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Stored as an older troy, or another tool, would: troy itself refuses it at load.
	pol, err := policies.Parse(policyDoc(t,
		[2]string{"big-repeat", bigRepeat},
		[2]string{"nested", nineAll},
		[2]string{"big-repeat-at-run-time", "len(repeat(repeat(step.description, 999999), 999999)) > 0"},
		[2]string{"nested-at-run-time", "let a = 1..(step_index+1000); all(a, all(a, all(a, all(a, true))))"},
		[2]string{"external", "step.metadata.network_zone == 'external'"},
	), "stored", "stored")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pol.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutPolicy(ctx, pol.Hash(), raw); err != nil {
		t.Fatal(err)
	}
	client, err := pipeline.NewClient(ctx, b, pol.Hash(), pipeline.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tr, err := ingest.LoadTrace(ctx, example(t, "traces", "pii-exfiltration.json"), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		res, err := client.Audit(ctx, tr)
		if err != nil {
			t.Fatalf("trace %d: %v\n%s", i, err, serve.log())
		}
		if len(res.Violations) != 1 || res.Violations[0].RuleID != "external" {
			t.Fatalf("trace %d: violations %+v", i, res.Violations)
		}
		failed := map[string]schemas.RuleError{}
		for _, e := range res.Explained.RuleErrors {
			failed[e.RuleID] = e
		}
		for _, id := range []string{"big-repeat", "nested", "big-repeat-at-run-time", "nested-at-run-time"} {
			if e := failed[id]; e.Count != len(tr.Steps) || e.FirstError == "" {
				t.Fatalf("trace %d: rule %s: %+v (all %+v)", i, id, e, res.Explained.RuleErrors)
			}
		}
		if serve.cmd.ProcessState != nil {
			t.Fatalf("serve exited:\n%s", serve.log())
		}
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// big-repeat and big-repeat-at-run-time break the memory limit, nested the known
	// iterations, and nested-at-run-time the time or the memory limit, whichever first.
	if !strings.Contains(string(body), `troy_rules_quarantined_total{limit="iterations"} 1`) {
		t.Errorf("metrics:\n%s", body)
	}
	var total float64
	for _, limit := range []string{"time", "memory", "iterations", "depth"} {
		var n float64
		fmt.Sscanf(after(string(body), `troy_rules_quarantined_total{limit="`+limit+`"} `), "%g", &n)
		total += n
	}
	if total != 4 {
		t.Errorf("%g rules quarantined, want 4:\n%s", total, body)
	}
	for _, id := range []string{"big-repeat", "nested", "big-repeat-at-run-time", "nested-at-run-time"} {
		if n := strings.Count(serve.log(), "rule_id="+id+" "); n != 1 {
			t.Errorf("rule %s logged %d times:\n%s", id, n, serve.log())
		}
	}
}

// after is what follows the first sep in s.
func after(s, sep string) string {
	_, rest, _ := strings.Cut(s, sep)
	return rest
}

// policies validate names the rules whose cost only the run-time limits bound, and with
// --strict fails on them; a rule that certainly breaks a limit is an error.
func TestPoliciesValidateFlagsCosts(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, "costly.json", policyDoc(t,
		[2]string{"self-join", "any(steps, any(prev_steps, .description == step.description))"},
		[2]string{"fine", "step.type == 'tool_call'"},
	))
	r := troyctl(t, "policies", "validate", "costly.json")
	want := `costly.json: rule "self-join": warning: line 1, column 12: quantifiers nested 2 deep over lists known only at run time (steps, prev_steps): the work at each step is the product of their lengths
costly.json: ok (2 rules, 1 warning)
`
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d\n%s\nwant\n%s%s", r.code, r.stdout, want, r.stderr)
	}
	r = troyctl(t, "policies", "validate", "--strict", "costly.json")
	if r.code != 1 || r.stdout != "" || r.stderr != "troyctl: "+strings.Split(want, "\n")[0]+"\n" {
		t.Fatalf("--strict: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	writeFile(t, "big.json", policyDoc(t, [2]string{"big-repeat", bigRepeat}))
	r = troyctl(t, "policies", "validate", "big.json", "minimal")
	if r.code != 1 || r.stdout != "minimal: ok (3 rules)\n" || r.stderr != `troyctl: big.json: rule "big-repeat": condition: line 1, column 5: repeat of up to 999999x999999 bytes exceeds the 16 MiB limit`+"\n" {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
