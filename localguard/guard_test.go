package localguard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/localguard"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/adapter"
	"github.com/troy-audit/troy/sdk/agent"
)

func compilePolicy(t testing.TB, doc string) *evaluator.Compiled {
	t.Helper()
	p, err := policies.Parse([]byte(doc), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testPolicy = `{"policy_id": "p", "rules": [
	{"rule_id": "shell", "description": "no shell", "condition": "step.description == 'bash'", "severity": "high", "weight": 40},
	{"rule_id": "tokens", "description": "too many tokens", "condition": "step.metadata.total_tokens > 100000", "severity": "medium", "weight": 10},
	{"rule_id": "after-pii", "description": "external after pii", "condition": "step.metadata.network_zone == 'external' and any(prev_steps, .metadata.data_classification == 'pii')", "severity": "critical", "weight": 50}]}`

type checkCase struct {
	action   string
	input    map[string]any
	metadata map[string]any
}

var checkCases = []checkCase{
	{"read", map[string]any{"path": "/x"}, map[string]any{"data_classification": "pii", "total_tokens": 5}},
	{"bash", map[string]any{"cmd": "ls"}, map[string]any{"total_tokens": 5}},
	{"chat", nil, map[string]any{"total_tokens": "200000"}}, // a rule error: blocked in enforce
	{"upload", map[string]any{"n": 1.5}, map[string]any{"network_zone": "external", "total_tokens": 1}},
	{"chat", nil, map[string]any{"total_tokens": 200001}},
}

// A local guard decides every step as the guard service does, in every mode.
func TestLocalGuardDecidesAsTheGuardService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := compilePolicy(t, testPolicy)
	b, err := bus.Open(ctx, bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pol := pipeline.NewPolicies(b)
	hash, err := pol.SetDefault(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	svc := pipeline.NewGuardService(b, pol, nil, nil)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = svc.Serve(sctx, 0) }()
	<-svc.Ready()
	for _, mode := range schemas.Modes() {
		t.Run(mode, func(t *testing.T) {
			remote := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "s-" + mode, Agent: "bot", Mode: mode, Policy: hash})
			local, err := localguard.New(ctx, c, localguard.Options{Session: "s-" + mode, Agent: "bot", Mode: mode, DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer local.Close(ctx)
			blocked := 0
			for i, cc := range checkCases {
				want, werr := remote.Check(ctx, cc.action, cc.input, cc.metadata, "")
				got, gerr := local.Check(ctx, cc.action, cc.input, cc.metadata, "")
				if (werr == nil) != (gerr == nil) || errors.As(werr, new(*agent.BlockedError)) != errors.As(gerr, new(*agent.BlockedError)) {
					t.Fatalf("check %d: error %v, the service's %v", i, gerr, werr)
				}
				w, _ := json.Marshal(want)
				g, _ := json.Marshal(got)
				if string(w) != string(g) {
					t.Errorf("check %d:\n local   %s\n service %s", i, g, w)
				}
				if !got.Allowed {
					blocked++
				}
			}
			if wantBlocked := map[string]int{schemas.ModeEnforce: 4}[mode]; blocked != wantBlocked {
				t.Errorf("%d blocked, want %d", blocked, wantBlocked)
			}
		})
	}
}

// agentEnv makes the test binary an agent process for the crash test.
const agentEnv = "TROY_TEST_LOCAL_AGENT_DIR"

// TestLocalAgentProcess is the agent the crash test starts and kills: it checks steps
// until killed, saying on stdout after each decision which step was decided.
func TestLocalAgentProcess(t *testing.T) {
	dir := os.Getenv(agentEnv)
	if dir == "" {
		t.Skip("run by TestLocalGuardLosesNoStepWhenKilled")
	}
	ctx := context.Background()
	g, err := localguard.New(ctx, compilePolicy(t, testPolicy), localguard.Options{Session: "crash", Agent: "bot", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		d, err := g.Check(ctx, "step"+strconv.Itoa(i), map[string]any{"i": i}, nil, "")
		if err != nil && !errors.As(err, new(*agent.BlockedError)) {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := g.RecordOutput(ctx, d.StepID, map[string]any{"result": i}); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(out, "decided %s\n", d.StepID)
		out.Flush()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
}

// startDeployment starts a NATS server with troy's streams on addr, as troyctl serve does.
func startDeployment(t *testing.T, ctx context.Context, addr string) *bus.Bus {
	t.Helper()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// countEvents reads a trace's events from a deployment and counts them by content: a
// repeat would be the same bytes.
func countEvents(t *testing.T, ctx context.Context, b *bus.Bus, subject string) (map[string]int, []event.Envelope) {
	t.Helper()
	evs, err := b.ReadSteps(ctx, subject, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range evs {
		n[string(e.Kind)+string(e.Data)]++
	}
	return n, evs
}

// An agent process killed (SIGKILL) mid-session loses no step it was given a decision
// for, and what it left is forwarded to a deployment once, however often forwarding is
// run again.
func TestLocalGuardLosesNoStepWhenKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLocalAgentProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), agentEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	decided := 0
	for decided < 200 && sc.Scan() {
		if sc.Text() != fmt.Sprintf("decided step-%d", decided) {
			t.Fatalf("agent said %q after %d decisions", sc.Text(), decided)
		}
		decided++
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code runs
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if decided < 200 {
		t.Fatalf("the agent stopped after %d decisions", decided)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("record files: %v", files)
	}
	evs, err := localguard.ReadRecord(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, e := range evs {
		if e.Kind != event.KindStep {
			continue
		}
		ev, err := event.Decode[event.Step](e)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != steps || ev.Step.StepID != "step-"+strconv.Itoa(steps) {
			t.Fatalf("record step %d is seq %d %s", steps, ev.Seq, ev.Step.StepID)
		}
		steps++
	}
	if steps < decided {
		t.Fatalf("the record holds %d steps; %d were decided", steps, decided)
	}

	// Forwarded once; forwarded again (the count of sent events lost too), still once.
	addr := freeAddr(t)
	dep := startDeployment(t, ctx, addr)
	for round := range 3 {
		sent, left, err := localguard.Flush(ctx, dir, agent.Options{URL: "nats://" + addr}, nil)
		if err != nil || left != 0 {
			t.Fatalf("round %d: flush: sent %d, left %d: %v", round, sent, left, err)
		}
		if want := map[int]int{0: len(evs), 1: 0, 2: len(evs)}[round]; sent != want {
			t.Fatalf("round %d: %d events sent, want %d", round, sent, want)
		}
		byID, stored := countEvents(t, ctx, dep, event.StepsSubject("bot", "crash"))
		if len(stored) != len(evs) || len(byID) != len(evs) {
			t.Fatalf("round %d: the deployment holds %d events (%d ids); the record %d", round, len(stored), len(byID), len(evs))
		}
		if round == 1 {
			if err := os.Remove(strings.TrimSuffix(files[0], ".jsonl") + ".sent"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A deployment that is absent while the agent works, and appears later, receives every
// recorded event once; the deployment's evaluator needs the policy, which is sent too.
func TestLocalGuardForwardsWhenTheDeploymentAppears(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := freeAddr(t)
	c := compilePolicy(t, testPolicy)
	g, err := localguard.New(ctx, c, localguard.Options{Session: "late", Agent: "bot", DataDir: t.TempDir(), Forward: agent.Options{URL: "nats://" + addr}})
	if err != nil {
		t.Fatal(err)
	}
	for i, cc := range checkCases {
		d, err := g.Check(ctx, cc.action, cc.input, cc.metadata, "")
		var blocked *agent.BlockedError
		if err != nil && !errors.As(err, &blocked) {
			t.Fatalf("check %d: %v", i, err)
		}
		if err := g.RecordOutput(ctx, d.StepID, map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.End(ctx); err != nil {
		t.Fatal(err)
	}
	dep := startDeployment(t, ctx, addr)
	if err := g.Close(ctx); err != nil { // waits until the deployment acknowledged everything
		t.Fatal(err)
	}
	byID, stored := countEvents(t, ctx, dep, event.StepsSubject("bot", "late"))
	want := 2*len(checkCases) + 1 // steps, outputs, end
	if len(stored) != want || len(byID) != want {
		t.Fatalf("the deployment holds %d events (%d ids), want %d", len(stored), len(byID), want)
	}
	if stored[len(stored)-1].Kind != event.KindEnd {
		t.Fatalf("the end comes last: %s", stored[len(stored)-1].Kind)
	}
	if _, err := dep.GetPolicy(ctx, c.Hash()); err != nil {
		t.Fatalf("the policy was not sent: %v", err)
	}
}

// A step too big to record is refused before it is decided; the session goes on.
func TestLocalGuardRefusesARecordTooLarge(t *testing.T) {
	ctx := context.Background()
	g, err := localguard.New(ctx, compilePolicy(t, testPolicy), localguard.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	big := map[string]any{"blob": string(make([]byte, localguard.MaxRecordSize))}
	_, err = g.Check(ctx, "upload", big, nil, "")
	var tooBig *localguard.RecordTooLargeError
	if !errors.As(err, &tooBig) {
		t.Fatalf("got %v", err)
	}
	d, err := g.Check(ctx, "ls", nil, map[string]any{"total_tokens": 1}, "")
	if err != nil || d.StepID != "step-0" {
		t.Fatalf("next check: %+v %v", d, err)
	}
}

// Closing while the deployment is away does not hold the agent: what is left stays in the
// outbox, said in the error.
func TestLocalGuardCloseDoesNotWaitForAnAbsentDeployment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := localguard.New(ctx, compilePolicy(t, testPolicy), localguard.Options{DataDir: t.TempDir(), Forward: agent.Options{URL: "nats://" + freeAddr(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(ctx, "ls", nil, map[string]any{"total_tokens": 1}, ""); err != nil {
		t.Fatal(err)
	}
	err = g.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 recorded event(s) not yet acknowledged") {
		t.Fatalf("close: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("close waited for the whole deadline")
	}
}

// Checks from many goroutines are serialized: every step gets its own position, in the
// session and in the record alike.
func TestLocalGuardConcurrentChecks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g, err := localguard.New(ctx, compilePolicy(t, testPolicy), localguard.Options{Session: "many", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				d, err := g.Check(ctx, "ls", map[string]any{"w": w, "i": i}, map[string]any{"total_tokens": 1}, "")
				if err == nil {
					err = g.RecordOutput(ctx, d.StepID, map[string]any{"ok": true})
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	path := g.RecordPath()
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(g.Trace().Steps); n != workers*each {
		t.Fatalf("%d steps in the session", n)
	}
	evs, err := localguard.ReadRecord(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := 0
	for _, e := range evs {
		if e.Kind == event.KindStep {
			ev, err := event.Decode[event.Step](e)
			if err != nil || ev.Seq != seq {
				t.Fatalf("record step %d: seq %d, %v", seq, ev.Seq, err)
			}
			seq++
		}
	}
	if seq != workers*each || len(evs) != 2*workers*each {
		t.Fatalf("the record holds %d steps and %d events", seq, len(evs))
	}
}

// A framework adapter's session runs on the local guard as on a deployment's: an allowed
// tool runs and its result is recorded, a forbidden one is blocked before it runs, and the
// end writes the session's report.
func TestAdapterSessionOnTheLocalGuard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	g, err := localguard.New(ctx, compilePolicy(t, testPolicy), localguard.Options{Session: "framework", Agent: "bot", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	var seen []string
	s := adapter.With(g, adapter.Options{
		MetadataFn:  func(string, map[string]any, string) map[string]any { return map[string]any{"total_tokens": 10} },
		OnViolation: func(d schemas.Decision) { seen = append(seen, d.Violations[0].RuleID) }})
	if s.ID() != "framework" {
		t.Fatalf("session %q, want the guard's", s.ID())
	}
	s.Enter()
	out, err := s.Run(ctx, "search", map[string]any{"q": "x"}, func() (string, error) { return "found", nil })
	if err != nil || out != "found" {
		t.Fatalf("an allowed tool: %q, %v", out, err)
	}
	ran := false
	_, err = s.Run(ctx, "bash", map[string]any{"cmd": "ls"}, func() (string, error) { ran = true; return "", nil })
	if !errors.As(err, new(*agent.BlockedError)) || ran || !slices.Equal(seen, []string{"shell"}) {
		t.Fatalf("bash: %v (ran %v, violations %v), want blocked before it ran", err, ran, seen)
	}
	s.Leave(ctx)
	if tr := g.Trace(); tr != nil && len(tr.Steps) != 0 {
		t.Fatalf("after the end, the guard starts a new run; it holds %d steps", len(tr.Steps))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "reports", "bot", "framework", "audit.json"))
	if err != nil || !strings.Contains(string(raw), `"result": "found"`) {
		t.Fatalf("the session's audit.json: %v\n%s", err, raw)
	}
}
