// Package servetest runs a real troyctl serve for the tests of agents and adapters in this
// repository: the binary built from the repository's source (found from this file), its
// own data directory, NATS and HTTP ports on loopback, stopped when the test ends.
package servetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

// Serve is a running troyctl serve.
type Serve struct {
	NATS    string // nats://127.0.0.1:PORT
	HTTP    string // http://127.0.0.1:PORT, the gateway
	Metrics string // http://127.0.0.1:PORT/metrics
	Token   string // a bearer token of the gateway
	DataDir string
	// OTLP is the OTLP/HTTP receiver's traces URL, http://127.0.0.1:PORT/v1/traces, and
	// AgentTokens the gateway's agent tokens for it, by agent name (StartWith).
	OTLP        string
	AgentTokens map[string]string
	bin         string
	log         *strings.Builder
	mu          sync.Mutex
}

// repoRoot is the repository's root, found from this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreePort is a TCP port on loopback that nothing listens on now, for a server a test
// starts.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start builds troyctl and runs serve with examples/policy.json and the HTTP gateway, with
// NATS authentication off (--insecure-no-auth): the adapters' tests connect anonymously.
func Start(t testing.TB) *Serve {
	t.Helper()
	return StartWith(t, Options{})
}

// StartAuth is Start with NATS authentication on, as serve runs by default: a client
// needs a credential (Creds).
func StartAuth(t testing.TB) *Serve {
	t.Helper()
	return StartWith(t, Options{Auth: true})
}

// Options change what StartWith runs.
type Options struct {
	Auth   bool   // NATS authentication on, as StartAuth
	Policy string // the policy file serve audits with; examples/policy.json when empty
	// OTLPAgents turns the OTLP/HTTP receiver on, with a gateway agent token issued
	// (troyctl auth agent NAME --http) for each agent named, and an admin token as Token.
	OTLPAgents []string
}

// Creds issues a NATS credential with troyctl auth (args such as "agent", "support-bot",
// or "reader") from the serve's data directory and returns its file.
func (s *Serve) Creds(t testing.TB, args ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "user.creds")
	cmd := exec.Command(s.bin, append(append([]string{"auth"}, args...), "--data-dir", s.DataDir, "-o", file)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("troyctl auth %v: %v\n%s", args, err, out)
	}
	return file
}

// StartWith is Start as o says.
func StartWith(t testing.TB, o Options) *Serve {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "troyctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/troyctl")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := &Serve{Token: "adapter-test-token", DataDir: filepath.Join(dir, "data"), bin: bin, log: &strings.Builder{}}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr, httpAddr, metricsAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t)), fmt.Sprintf("127.0.0.1:%d", FreePort(t)), fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	s.NATS, s.HTTP, s.Metrics = "nats://"+natsAddr, "http://"+httpAddr, "http://"+metricsAddr+"/metrics"
	if o.Policy == "" {
		o.Policy = filepath.Join(repoRoot(), "examples", "policy.json")
	}
	args := []string{"serve", "--data-dir", s.DataDir, "--listen", natsAddr, "--metrics", metricsAddr,
		"--policy", o.Policy, "--http", httpAddr, "--idle-timeout", "0"}
	if len(o.OTLPAgents) == 0 {
		args = append(args, "--http-tokens", tokens)
	} else {
		// The tokens are issued into the data directory, where serve reads them.
		s.AgentTokens = map[string]string{}
		for _, name := range o.OTLPAgents {
			s.AgentTokens[name] = s.httpToken(t, "agent", name)
		}
		s.Token = s.httpToken(t, "admin")
		otlpAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		s.OTLP = "http://" + otlpAddr + "/v1/traces"
		args = append(args, "--otlp", otlpAddr)
	}
	if !o.Auth {
		args = append(args, "--insecure-no-auth")
	}
	cmd := exec.Command(bin, args...)
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

// httpToken issues a gateway token with troyctl auth ROLE [NAME] --http and returns it.
func (s *Serve) httpToken(t testing.TB, args ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	cmd := exec.Command(s.bin, append(append([]string{"auth"}, args...), "--http", "--data-dir", s.DataDir, "-o", file)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("troyctl auth %v --http: %v\n%s", args, err, out)
	}
	tok, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(tok))
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
	conn, err := agent.Connect(ctx, agent.Options{URL: s.NATS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// PutPolicy stores a policy file in the serve's policy bucket through the gateway
// (PUT /v1/policies/{sha256}) and returns the hash that checks name it by. A bundled
// template's name is returned as it is: the deployment stores templates named in checks.
func (s *Serve) PutPolicy(t testing.TB, policy string) string {
	t.Helper()
	raw, err := os.ReadFile(policy)
	if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(policy, `/\.`) {
		return policy
	}
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.HTTP+"/v1/policies/"+hex.EncodeToString(sum[:]), bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stored struct {
		Policy string `json:"policy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stored); err != nil || resp.StatusCode != http.StatusOK || stored.Policy == "" {
		t.Fatalf("store %s: HTTP %d, %v", policy, resp.StatusCode, err)
	}
	return stored.Policy
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
