package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/sdk/servetest"
)

// serve outlives its NATS server: with the server gone, /healthz says so; once the server
// is back, serve is connected again on its own, healthy, and checks are answered.
func TestServeHealsWhenNATSComesBack(t *testing.T) {
	node := startNATS(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
	serve := startServe(t, "--nats", node.url, "--metrics", metrics, "--policy", "minimal", "--data-dir", t.TempDir())
	health := func() (int, string) {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitHealth := func(what string, ok func(int, string) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			code, body := health()
			if ok(code, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /healthz %d %s\nserve:\n%s", what, code, body, serve.log())
			}
			time.Sleep(50 * time.Millisecond) // polling /healthz, bounded by the deadline
		}
	}
	waitHealth("healthy at start", func(code int, _ string) bool { return code == http.StatusOK })

	_ = node.cmd.Process.Kill()
	_ = node.cmd.Wait()
	waitHealth("not ok without NATS", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "nats: not connected")
	})

	u, _ := url.Parse(node.url)
	h, _ := url.Parse(node.health)
	port, _ := strconv.Atoi(u.Port())
	httpPort, _ := strconv.Atoi(h.Port())
	bin, err := natsServer()
	if err != nil {
		t.Fatal(err)
	}
	startNode(t, exec.Command(bin, node.cmd.Args[1:]...), port, httpPort) // the same port and store
	waitHealth("healthy again", func(code int, body string) bool {
		var st struct {
			NATS bool `json:"nats"`
		}
		return code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && st.NATS
	})
	r := troyctl(t, "check", "minimal", "-a", "bash", "--nats", node.url, "--session", "after-the-outage")
	if r.code != exitOK && r.code != exitBlocked || !strings.Contains(r.stdout, `"step_id": "step-0"`) {
		t.Fatalf("a check after the outage: exit %d\n%s%s\nserve:\n%s", r.code, r.stdout, r.stderr, serve.log())
	}
}
