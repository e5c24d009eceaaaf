// Package npmtest installs npm packages for tests that run node programs: once per set
// of versions, into the user's cache directory, so that later runs start at once.
package npmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// EnvRequireNode, set to 1, turns a missing node or npm into a failure instead of a skip.
const EnvRequireNode = "TROY_REQUIRE_NODE"

// Require skips the test when node or npm is not installed, or fails it when
// EnvRequireNode is 1.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv(EnvRequireNode) == "1" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// Install runs npm with args (such as "ci", or "install" and pinned packages) in a new
// directory holding files (such as package.json and package-lock.json), and returns the
// node_modules it made. The result is kept in the user's cache directory as
// troy-test/NAME: name must change whenever what is installed does. It calls Require.
func Install(t testing.TB, name string, files map[string][]byte, args ...string) string {
	t.Helper()
	Require(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "troy-test", name)
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, ".troy-complete")); err == nil {
		return modules
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// Installed beside the cache entry, then renamed into place: a run stopped half-way
	// leaves no broken entry.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for file, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// --prefix keeps npm in tmp: without a package.json there, it would look for one in
	// the directories above.
	install := exec.CommandContext(ctx, "npm", append(args, "--no-audit", "--no-fund", "--silent", "--prefix", tmp)...)
	install.Dir = tmp
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm %v: %v\n%s", args, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "node_modules", ".troy-complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("install the npm packages into %s: %v", dir, err)
	}
	return modules
}
