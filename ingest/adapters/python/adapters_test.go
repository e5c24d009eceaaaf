// Package python_test runs the Python package's tests twice: against the local guard (a
// troyctl guard --stdio child, no server) and against a real troyctl serve with its HTTP
// gateway (TROY_URL).
package python_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"
)

// envRequirePython, set to 1, turns a missing python3 into a failure instead of a skip.
const envRequirePython = "TROY_REQUIRE_PYTHON"

func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv(envRequirePython) == "1" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
	return p
}

// baseEnv is the environment without the variables that choose where the guard runs.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "TROY_URL", "TROY_TOKEN", "TROY_NATS_URL", "TROY_BIN", "TROY_DATA_DIR":
		default:
			env = append(env, kv)
		}
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1")
}

// unittest runs the tests under tests/ and fails the test unless they all pass.
func unittest(t *testing.T, env []string, log func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python tests: %v\n%s\n%s", err, out, log())
	}
	t.Logf("%s", out)
}

// TestPythonLocalGuard: no server; the guard is a troyctl child found by TROY_BIN.
func TestPythonLocalGuard(t *testing.T) {
	python(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "troyctl")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/troyctl")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unittest(t, append(baseEnv(), "TROY_BIN="+bin, "TROY_DATA_DIR="+filepath.Join(dir, "data")), func() string { return "" })
}

// TestPythonServer: the same tests (and the server's own) against troyctl serve.
func TestPythonServer(t *testing.T) {
	python(t)
	s := servetest.Start(t)
	// A policy with a rule that a string fails (the guardrails template's token limit), for the
	// rule error tests.
	env := append(baseEnv(), "TROY_URL="+s.HTTP, "TROY_TOKEN="+s.Token, "TROY_NATS_URL="+s.NATS,
		"TROY_RULE_ERROR_POLICY="+s.PutPolicy(t, "guardrails"))
	unittest(t, env, func() string { return "serve:\n" + s.Log() })
}

// TestPythonNatsCredentials: the NATS client with an agent's credential, against troyctl
// serve with authentication on.
func TestPythonNatsCredentials(t *testing.T) {
	python(t)
	s := servetest.StartAuth(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), "-m", "unittest", "discover", "-s", "tests", "-p", "test_creds.py", "-v")
	cmd.Env = append(baseEnv(), "TROY_NATS_URL="+s.NATS, "TROY_CREDS="+s.Creds(t, "agent", "py-creds"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") || strings.Contains(string(out), "skipped") {
		t.Fatalf("python tests: %v\n%s\n%s", err, out, s.Log())
	}
	t.Logf("%s", out)
}
