// Package js_test runs the TypeScript adapters' tests (node --test) against a real troyctl
// serve, with the packages installed from npm.
package js_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/adapters/servetest"
)

// envRequireNode, set to 1, turns a missing node or npm into a failure instead of a skip.
const envRequireNode = "TROY_REQUIRE_NODE"

func TestTypeScriptAdapters(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv(envRequireNode) == "1" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	s := servetest.Start(t)
	cmd := exec.CommandContext(ctx, "node", "--test", "dist/test/")
	cmd.Env = append(os.Environ(), "TROY_NATS_URL="+s.NATS, "TROY_REPORTS_DIR="+filepath.Join(s.DataDir, "reports"), "NODE_NO_WARNINGS=1",
		"TROY_RULE_ERROR_POLICY="+s.PutPolicy(t, "guardrails")) // a rule a string fails, for the rule error test
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s\nserve:\n%s", err, out, s.Log())
	}
	t.Logf("%s", out)
}
