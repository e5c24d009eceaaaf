package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/sdk/servetest"
)

// serve --log-format json writes one JSON object a line, and the lines about a trace
// carry its agent and trace: an event of a trace that no stage can read is dead-lettered,
// and the line saying so names them.
func TestServeLogsJSONWithTheTrace(t *testing.T) {
	port := servetest.FreePort(t)
	p := startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--log-format", "json", "--log-level", "info")
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := nats.NewMsg(event.StepsSubject("billing-bot", "run-42"))
	msg.Header.Set(event.KindHeader, string(event.KindStep))
	msg.Data = []byte(`{"trace_id": "run-42", "agent_name": "billing-bot", "seq": "not a number"}`)
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var dead map[string]any
		sc := bufio.NewScanner(strings.NewReader(p.log()))
		lines := 0
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("a log line that is not JSON: %q: %v", sc.Text(), err)
			}
			lines++
			if line["msg"] == "event dead-lettered" {
				dead = line
			}
		}
		if dead != nil {
			if dead["agent"] != "billing-bot" || dead["trace"] != "run-42" || dead["level"] != "WARN" || dead["consumer"] == nil {
				t.Fatalf("dead letter line: %v", dead)
			}
			if lines < 3 {
				t.Fatalf("%d lines logged: %s", lines, p.log())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter logged in 30s:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond) // polling serve's log, bounded by the deadline
	}
}

// The log flags are checked before anything starts, each with a one-line error.
func TestLogFlagsRefuseBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--log-format", "yaml"}, `--log-format "yaml": expected text or json`},
		{[]string{"serve", "--log-level", "loud"}, `--log-level "loud": expected debug, info, warn or error`},
		{[]string{"guard", "--stdio", "--log-format", "xml"}, `--log-format "xml": expected text or json`},
		{[]string{"mcp", "--log-level", "trace", "--", "true"}, `--log-level "trace": expected debug, info, warn or error`},
	} {
		r := troyctl(t, append(tc.args, "--data-dir", t.TempDir())...)
		if r.code != exitError || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d: %q, want one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
