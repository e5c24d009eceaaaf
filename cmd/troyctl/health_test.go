package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// troyctl health against a real serve: healthy with a policy, not healthy (and saying why)
// without one.
func TestHealthOfServe(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"policy loaded", []string{"--policy", "minimal"}, exitOK, "healthy: http://", ""},
		{"no policy", nil, exitError, "", "HTTP 503: policy: no default policy loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports := freePorts(t, 2)
			metrics := fmt.Sprintf("127.0.0.1:%d", ports[1])
			startServe(t, append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--metrics", metrics, "--data-dir", t.TempDir()}, tt.args...)...)
			url := "http://" + metrics + "/healthz"
			// The components start after serve says it serves: ask until the answer is the
			// expected one, within a bound.
			var r result
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				r = troyctl(t, "health", "--url", url, "--timeout", "2s")
				if r.code == tt.code && strings.Contains(r.stdout, tt.stdout) && strings.Contains(r.stderr, tt.stderr) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q, %q", r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
			if n := strings.Count(r.stderr+r.stdout, "\n"); n != 1 {
				t.Errorf("%d lines, want one: %q", n, r.stderr+r.stdout)
			}
		})
	}
}

// Whatever goes wrong, troyctl health exits 1 with one line naming the URL and why, within
// its timeout.
func TestHealthFailures(t *testing.T) {
	// A port that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	closed := freePorts(t, 1)[0]
	notTroy := httptest.NewServer(http.NotFoundHandler())
	defer notTroy.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing listening", []string{"--url", fmt.Sprintf("http://127.0.0.1:%d/healthz", closed)}, "connection refused"},
		{"no answer", []string{"--url", "http://" + silent.Addr().String() + "/healthz", "--timeout", "300ms"}, "no answer within the timeout"},
		{"not troy", []string{"--url", notTroy.URL + "/healthz"}, "HTTP 404, not troy's /healthz"},
		{"bad url", []string{"--url", "http://%zz"}, `--url "http://%zz"`},
		{"bad timeout", []string{"--timeout", "0s"}, "--timeout 0s: expected a duration above 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := troyctl(t, append([]string{"health"}, tt.args...)...)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", r.code, r.stdout, r.stderr, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}
