// Package js_test runs the TypeScript adapters' tests (node --test), with the packages
// installed from npm: against the local guard (troyctl guard --stdio, built from this
// repository, with no server running) and against a real troyctl serve, over NATS and HTTP.
package js_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"
)

// envRequireNode, set to 1, turns a missing node or npm into a failure instead of a skip.
const envRequireNode = "TROY_REQUIRE_NODE"

// repoRoot is the repository's root, from this package's directory.
const repoRoot = "../../.."

// environ is this process's environment without troy's own variables, so that a test
// chooses where its guard asks.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TROY_") || strings.HasPrefix(kv, envRequireNode+"=") {
			env = append(env, kv)
		}
	}
	return append(env, "NODE_NO_WARNINGS=1")
}

func TestTypeScriptAdapters(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv(envRequireNode) == "1" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := os.Stat("node_modules"); err != nil {
		install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--silent")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "npx", "tsc", "-p", ".").CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	nodeTest := func(t *testing.T, file string, env ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "node", "--test", filepath.Join("dist", "test", file))
		cmd.Env = append(environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node --test %s: %v\n%s", file, err, out)
		}
		t.Logf("%s", out)
	}

	t.Run("local", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "troyctl")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/troyctl")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		nodeTest(t, "local.test.js", "TROY_BIN="+bin)
	})

	t.Run("serve", func(t *testing.T) {
		s := servetest.Start(t)
		nodeTest(t, "serve.test.js", "TROY_NATS_URL="+s.NATS, "TROY_URL="+s.HTTP, "TROY_TOKEN="+s.Token,
			"TROY_REPORTS_DIR="+filepath.Join(s.DataDir, "reports"),
			"TROY_RULE_ERROR_POLICY="+s.PutPolicy(t, "guardrails")) // a rule a string fails, for the rule error test
	})

	t.Run("serve with credentials", func(t *testing.T) {
		s := servetest.StartAuth(t)
		nodeTest(t, "creds.test.js", "TROY_NATS_URL="+s.NATS, "TROY_CREDS="+s.Creds(t, "agent", "creds-agent"))
	})
}
