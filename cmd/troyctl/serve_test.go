package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// streamConfigs reads the configuration of troy's streams, and of the streams under its
// buckets (KV_…), from a running deployment.
func streamConfigs(t *testing.T, url string, opts ...nats.Option) map[string]jetstream.StreamConfig {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]jetstream.StreamConfig{}
	for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream, "KV_" + bus.PolicyBucket, "KV_" + bus.CacheBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().Config
	}
	return out
}

// serve's retention flags reach every stream it declares, and the age the explanation
// cache; a second instance started without them leaves them as they are.
func TestServeRetention(t *testing.T) {
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	data := filepath.Join(t.TempDir(), "data")
	startServe(t, "--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--retain", "720h", "--retain-bytes", "2GiB")
	// serve made its signing key on first start, for its owner only, and auth public-key
	// reads it from the data directory.
	if info, err := os.Stat(filepath.Join(data, "auth", "signing.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("signing key: %v %v", info, err)
	}
	if r := troyctl(t, "auth", "public-key", "--data-dir", data); r.code != 0 || !strings.HasPrefix(r.stdout, "ed25519:") {
		t.Errorf("public-key --data-dir: %d %s %s", r.code, r.stdout, r.stderr)
	}
	check := func(when string) {
		t.Helper()
		cfgs := streamConfigs(t, url)
		for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream} {
			if c := cfgs[name]; c.MaxAge != 720*time.Hour || c.MaxBytes != 2<<30 {
				t.Errorf("%s: %s: age %s, bytes %d", when, name, c.MaxAge, c.MaxBytes)
			}
		}
		if age := cfgs["KV_"+bus.CacheBucket].MaxAge; age != 720*time.Hour {
			t.Errorf("%s: explanation cache keeps replies for %s", when, age)
		}
	}
	check("first instance")
	startServe(t, "--nats", url, "--only", "guard")
	check("after a second instance without the flags")
}

// stopServe sends serve SIGTERM and waits for it to exit, for at most half a minute;
// it returns the exit code.
func stopServe(t *testing.T, p *process) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
		t.Fatalf("serve did not stop within 30s of SIGTERM:\n%s", p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// A rolling restart of the guard refuses no check: two instances (processes of their own
// on one NATS server) answer sessions checked under load; one is drained with SIGTERM and
// started again, then the other is. A draining instance leaves the queue group before it
// stops answering, and the SDK sends a request that no instance handled again. Every check
// answered is in the audit exactly once.
func TestGuardRollingRestartRefusesNothing(t *testing.T) {
	node := startNATS(t)
	args := func() []string {
		return []string{"--nats", node.url, "--only", "guard", "--policy", "minimal", "--data-dir", t.TempDir()}
	}
	first, second := startServe(t, args()...), startServe(t, args()...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := agent.Connect(ctx, agent.Options{URL: node.url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sessions = 16
	var (
		checks   atomic.Int64
		mu       sync.Mutex
		refused  []error
		answered [sessions]int
		wg       sync.WaitGroup
	)
	stopLoad := make(chan struct{})
	for i := range sessions {
		wg.Go(func() {
			g := conn.Guard(agent.GuardOptions{Session: fmt.Sprint("rolling-", i), Agent: "bot", Mode: schemas.ModeMonitor, Timeout: 10 * time.Second})
			for n := 0; ; n++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				if _, err := g.Check(ctx, fmt.Sprint("search-", n), nil, nil, ""); err != nil {
					mu.Lock()
					refused = append(refused, err)
					mu.Unlock()
					continue
				}
				answered[i]++
				checks.Add(1)
			}
		})
	}
	// more waits until the load has made n more checks.
	more := func(n int64, while string) {
		t.Helper()
		want := checks.Load() + n
		deadline := time.Now().Add(time.Minute)
		for checks.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d checks, want %d", while, checks.Load(), want)
			}
			time.Sleep(10 * time.Millisecond) // polling a counter, bounded by the deadline
		}
	}
	more(500, "before the restart")
	if code := stopServe(t, first); code != 0 {
		t.Fatalf("the first instance exited %d:\n%s", code, first.log())
	}
	more(500, "with the first instance stopped")
	first = startServe(t, args()...)
	more(500, "with the first instance back")
	if code := stopServe(t, second); code != 0 {
		t.Fatalf("the second instance exited %d:\n%s", code, second.log())
	}
	more(500, "with the second instance stopped")
	close(stopLoad)
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("%d of %d checks refused during the rolling restart; the first: %v", len(refused), int(checks.Load())+len(refused), refused[0])
	}

	b, err := bus.Open(ctx, bus.Options{URL: node.url, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range sessions {
		events, err := b.ReadSteps(ctx, event.StepsSubject("bot", fmt.Sprint("rolling-", i)), math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		for _, e := range events {
			if e.Kind == event.KindStep {
				steps++
			}
		}
		if steps != answered[i] {
			t.Errorf("session %d: %d steps in the stream for %d checks answered", i, steps, answered[i])
		}
	}
}

// serve says at once, in one line, that the embedded server's address is in use, rather
// than waiting for a server that cannot start.
func TestServeAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // the old wait was a minute
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"serve", "--data-dir", t.TempDir(), "--listen", addr, "--metrics", ""}, strings.NewReader(""), &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if code != exitError || ctx.Err() != nil || !strings.HasPrefix(last, "troyctl: --listen "+addr+": the address is in use") {
		t.Fatalf("exit %d (context: %v), stderr:\n%s", code, ctx.Err(), stderr.String())
	}
}

// A component that cannot run stops serve with exit 1 and the component's error, once
// --restarts is spent, instead of running on without it.
func TestServeExitsWhenAComponentFails(t *testing.T) {
	node := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: node.url})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	// A durable with the explainer's name that the explainer cannot take over.
	if _, err := js.CreateConsumer(ctx, bus.ResultsStream, jetstream.ConsumerConfig{Durable: "explainer", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"serve", "--nats", node.url, "--only", "evaluator,explainer", "--restarts", "0", "--data-dir", t.TempDir(), "--metrics", ""},
		strings.NewReader(""), &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("serve ran on without its explainer:\n%s", stderr.String())
	}
	if code != exitError || !strings.Contains(stderr.String(), "troyctl: component explainer stopped the pipeline: 1 failures within 5m0s, 0 restarts allowed; the last: consumer explainer: ") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}

// serve says at start, in its log and in a plain line on stderr, when no default policy
// is set and how to set one; a start with --policy, or on a data directory that keeps
// one, says nothing of the kind.
func TestServeSaysWhenNoPolicyIsSet(t *testing.T) {
	data := t.TempDir()
	// The policy given also has a setting troy does not read: serve says so once at start.
	withSetting := writePolicy(t, "false", `"global_config": {"halt_on_severity": "critical"},`)
	const plain = "troyctl: no default policy is set: traces and guard checks that name no policy wait (checks answer 503) until one is; start serve with --policy FILE or a bundled template (troyctl policies list), such as --policy minimal (kept for later starts)"
	for _, tc := range []struct {
		name     string
		args     []string
		want     bool
		settings int // notices of a setting troy does not read
	}{
		{"fresh, no --policy", nil, true, 0},
		{"--policy", []string{"--policy", withSetting}, false, 1},
		{"the kept default", nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := servetest.FreePort(t)
			p := startServe(t, append([]string{"--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, tc.args...)...)
			// Stopped first: Wait returns once all of stderr has been copied.
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
			log := p.log()
			said := strings.Contains(log, "\n"+plain+"\n")
			logged := strings.Contains(log, `level=WARN msg="no default policy is set`)
			if said != tc.want || logged != tc.want {
				t.Fatalf("want the notice %v; stderr:\n%s", tc.want, log)
			}
			setting := "troyctl: notice: " + withSetting + ": global_config.halt_on_severity is not a setting troy reads"
			if n := strings.Count(log, setting); n != tc.settings {
				t.Fatalf("%d notices of the setting; stderr:\n%s", n, log)
			}
		})
	}
}
