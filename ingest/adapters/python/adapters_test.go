// Package python_test runs the Python adapters' tests against a real troyctl serve with
// its HTTP gateway.
package python_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/adapters/servetest"
)

// envRequirePython, set to 1, turns a missing python3 into a failure instead of a skip.
const envRequirePython = "TROY_REQUIRE_PYTHON"

func TestPythonAdapters(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv(envRequirePython) == "1" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
	s := servetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "tests", "-v")
	// A policy with a rule that a string fails (the guardrails template's token limit), for the
	// rule error tests.
	cmd.Env = append(os.Environ(), "TROY_URL="+s.HTTP, "TROY_TOKEN="+s.Token, "TROY_NATS_URL="+s.NATS, "PYTHONDONTWRITEBYTECODE=1",
		"TROY_RULE_ERROR_POLICY="+s.PutPolicy(t, "guardrails"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python tests: %v\n%s\nserve:\n%s", err, out, s.Log())
	}
	t.Logf("%s", out)
}
