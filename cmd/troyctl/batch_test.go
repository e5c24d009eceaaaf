package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory of symbolic links to traces is audited as the traces themselves; a link
// to its own directory is not followed.
func TestBatchFollowsSymlinks(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("links", 0o755); err != nil {
		t.Fatal(err)
	}
	traces, err := filepath.Glob(example(t, "traces", "*.json"))
	if err != nil || len(traces) == 0 {
		t.Fatalf("%v: %d traces", err, len(traces))
	}
	for _, tr := range traces {
		if err := os.Symlink(tr, filepath.Join("links", filepath.Base(tr))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(".", filepath.Join("links", "again.json")); err != nil {
		t.Fatal(err)
	}
	r := troyctl(t, "batch", "links", "minimal", "--no-explain", "-q", "-o", "out")
	want := fmt.Sprintf("Batch complete: %d processed, 0 skipped.", len(traces))
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("exit %d, want %q:\n%s%s", r.code, want, r.stdout, r.stderr)
	}
}
