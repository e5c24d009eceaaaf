// Package servetest runs a real troyctl serve for adapter tests: the binary built from
// this repository, its own data directory, NATS and HTTP ports on loopback, stopped when
// the test ends.
package servetest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/agent"
	"github.com/troy-audit/troy/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// Serve is a running troyctl serve.
type Serve struct {
	NATS    string // nats://127.0.0.1:PORT
	HTTP    string // http://127.0.0.1:PORT, the gateway
	Token   string // a bearer token of the gateway
	DataDir string
	log     *strings.Builder
	mu      sync.Mutex
}

// repoRoot is the repository's root, found from this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start builds troyctl and runs serve with examples/policy.json and the HTTP gateway.
func Start(t testing.TB) *Serve {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "troyctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/troyctl")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := &Serve{Token: "adapter-test-token", DataDir: filepath.Join(dir, "data"), log: &strings.Builder{}}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.NATS, s.HTTP = "nats://"+natsAddr, "http://"+httpAddr
	cmd := exec.Command(bin, "serve", "--data-dir", s.DataDir, "--listen", natsAddr, "--metrics", "",
		"--policy", filepath.Join(repoRoot(), "examples", "policy.json"), "--http", httpAddr, "--http-tokens", tokens, "--idle-timeout", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.log.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "troy serving on ") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("serve stopped:\n%s", s.Log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start in 30s:\n%s", s.Log())
	}
	return s
}

// Log is what serve logged so far.
func (s *Serve) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Report waits for a session's audit.json, for at most ten seconds, and returns its path.
func (s *Serve) Report(t testing.TB, session string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		matches, _ := filepath.Glob(filepath.Join(s.DataDir, "reports", "*", "*", "audit.json"))
		for _, m := range matches {
			if strings.Contains(m, session) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report of %s:\n%s", session, s.Log())
		}
		time.Sleep(50 * time.Millisecond) // polling for the reporter's file, bounded by the deadline
	}
}

// Steps reads a session's report and lists its steps as "type:description".
func (s *Serve) Steps(t testing.TB, session string) ([]string, *schemas.AuditResult) {
	t.Helper()
	raw, err := os.ReadFile(s.Report(t, session))
	if err != nil {
		t.Fatal(err)
	}
	var audit schemas.AuditResult
	if err := pyjson.Unmarshal(raw, &audit); err != nil { // audit.json may hold NaN and Infinity
		t.Fatal(err)
	}
	var steps []string
	for _, st := range audit.Trace.Steps {
		steps = append(steps, st.Type+":"+st.Description)
	}
	return steps, &audit
}

// Conn connects an agent to the serve, until the test ends.
func (s *Serve) Conn(t testing.TB) *agent.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := agent.Connect(ctx, bus.Options{URL: s.NATS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// PutPolicy stores a policy (a file or a bundled template name) in the serve's policy
// bucket and returns its hash, which checks can name instead of the default policy.
func (s *Serve) PutPolicy(t testing.TB, policy string) string {
	t.Helper()
	p, err := policies.Resolve(policy)
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: s.NATS, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hash, err := pipeline.NewPolicies(b).Put(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return hash
}

// AdminBash is a metadata function that runs the bash tool with admin rights, which
// examples/policy.json forbids to agents that are not admins.
func AdminBash(action string, _ map[string]any, _ string) map[string]any {
	if action == "bash" {
		return map[string]any{"permission_level": "admin"}
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
