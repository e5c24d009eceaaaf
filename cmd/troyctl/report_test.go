package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/servetest"
)

// A report got with troyctl report is the file serve's reporter wrote, byte for byte, and
// verifies; after a restart of serve with no report files, it is still there, the same.
func TestReportIsTheFileServeWrote(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	listen := fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
	serveArgs := []string{"serve", "--metrics", "", "--data-dir", data, "--listen", listen, "--policy", example(t, "policy.json")}
	s := startServeCmd(t, execTroyctl(t, serveArgs...))
	agentName, trace := "support-assistant", "support-7f3a"
	if r := troyctl(t, "batch", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"), "--nats", "nats://"+listen,
		"--creds", filepath.Join(data, "auth", "admin.creds"), "-o", filepath.Join(dir, "batch"), "-q", "--no-explain"); r.code != 0 {
		t.Fatalf("batch: exit %d %s", r.code, r.stderr)
	}
	files := filepath.Join(data, "reports", schemas.Token(agentName), schemas.Token(trace))
	var written [2][]byte
	deadline := time.Now().Add(30 * time.Second)
	for i, name := range []string{"report.md", "audit.json"} {
		for written[i] == nil {
			written[i], _ = os.ReadFile(filepath.Join(files, name))
			if written[i] == nil {
				if time.Now().After(deadline) {
					t.Fatalf("serve wrote no %s:\n%s", name, s.log())
				}
				time.Sleep(20 * time.Millisecond) // polling for serve's file, bounded by the deadline
			}
		}
	}
	get := func(what string) {
		t.Helper()
		out := filepath.Join(dir, what)
		md, js := filepath.Join(out, "report.md"), filepath.Join(out, "audit.json")
		if r := troyctl(t, "report", agentName, trace, "--data-dir", data, "-o", md, "-j", js); r.code != 0 {
			t.Fatalf("%s: report: exit %d %s", what, r.code, r.stderr)
		}
		for i, p := range []string{md, js} {
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, written[i]) {
				t.Errorf("%s: %s is not the file serve wrote (%v)", what, p, err)
			}
		}
		if r := troyctl(t, "verify", js, md, "--data-dir", data); r.code != 0 {
			t.Errorf("%s: verify: exit %d %s %s", what, r.code, r.stdout, r.stderr)
		}
		if r := troyctl(t, "report", agentName, trace, "--data-dir", data, "--json"); r.code != 0 || r.stdout != string(written[1]) {
			t.Errorf("%s: --json: exit %d, %d bytes %s", what, r.code, len(r.stdout), r.stderr)
		}
	}
	get("first")
	reader := filepath.Join(dir, "reader.creds")
	if r := troyctl(t, "auth", "reader", "--data-dir", data, "-o", reader); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := troyctl(t, "report", agentName, trace, "--nats", "nats://"+listen, "--creds", reader); r.code != 0 || r.stdout != string(written[0]) {
		t.Errorf("a reader's report.md: exit %d %s", r.code, r.stderr)
	}
	// One line that names the trace and agent once.
	if r := troyctl(t, "report", agentName, "never-sent", "--data-dir", data); r.code != 1 || strings.Count(r.stderr, `"never-sent"`) != 1 || !strings.Contains(r.stderr, "no finished run") {
		t.Errorf("a trace never sent: exit %d %s", r.code, r.stderr)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve stopped: %v\n%s", err, s.log())
	}
	startServeCmd(t, execTroyctl(t, append(serveArgs, "--reports", "none")...))
	get("after a restart")
}
