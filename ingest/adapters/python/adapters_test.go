// Package python_test runs the Python adapters' tests against a real troyctl serve with
// its HTTP gateway.
package python_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envRequirePython, set to 1, turns a missing python3 into a failure instead of a skip.
const envRequirePython = "TROY_REQUIRE_PYTHON"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPythonAdapters(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv(envRequirePython) == "1" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "troyctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/troyctl")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	token := "py-test-token"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	serve := exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--metrics", "", "--policy", filepath.Join("..", "..", "..", "examples", "policy.json"), "--http", httpAddr, "--http-tokens", tokens)
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	serve.Stderr = &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
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
			t.Fatalf("serve stopped:\n%s", log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start in 30s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Env = append(os.Environ(), "TROY_URL=http://"+httpAddr, "TROY_TOKEN="+token, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python tests: %v\n%s\nserve:\n%s", err, out, log.String())
	}
	if !strings.Contains(string(out), "OK") {
		t.Fatalf("python tests:\n%s", out)
	}
	t.Logf("%s", out)
}
