package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// libchdb finds libchdb.so where chdb-go looks for it.
func libchdb() string {
	for _, p := range []string{os.Getenv("CHDB_LIB_PATH"), "/usr/local/lib/libchdb.so"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// The migrations and every analytics query run on a current ClickHouse (chDB), not only
// on the old server the other tests use.
func TestSQLRunsOnCurrentClickHouse(t *testing.T) {
	lib := libchdb()
	if lib == "" {
		t.Skip("libchdb.so not found (set CHDB_LIB_PATH; ./scripts/test downloads it): the SQL was not checked on a current ClickHouse")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "-tags", "chdb", ".")
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"chDB 2", "migrations: ", "applied twice", "analytics: ", "ok: "} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	t.Log(strings.TrimSpace(string(out)))
}
