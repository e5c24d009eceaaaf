package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/troy-audit/troy/internal/npmtest"
	"github.com/troy-audit/troy/schemas"
)

// mcpServersVersion pins the npm MCP servers the tests run, and mcpSDKVersion the
// TypeScript SDK whose client one test runs.
const (
	mcpServersVersion = "2026.8.31"
	mcpSDKVersion     = "1.32.2"
)

// mcpServers installs @modelcontextprotocol/server-filesystem, server-everything and the
// TypeScript SDK from npm into a cache directory (once per version) and returns their node_modules. Without
// node or npm the test is skipped, unless TROY_REQUIRE_NODE=1.
func mcpServers(t testing.TB) string {
	t.Helper()
	return npmtest.Install(t, "mcp-servers-"+mcpServersVersion+"-sdk-"+mcpSDKVersion, nil, "install",
		"@modelcontextprotocol/server-filesystem@"+mcpServersVersion, "@modelcontextprotocol/server-everything@"+mcpServersVersion, "@modelcontextprotocol/sdk@"+mcpSDKVersion)
}

// mcpServerCmd is the command line that runs one of the installed servers.
func mcpServerCmd(modules, pkg string, args ...string) []string {
	return append([]string{"node", filepath.Join(modules, "@modelcontextprotocol", pkg, "dist", "index.js")}, args...)
}

// syncBuffer collects a child's stderr, which is written while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mcpConnect connects the Go SDK's client to a command over stdio.
func mcpConnect(t *testing.T, ctx context.Context, opts *mcp.ClientOptions, command ...string) (*mcp.ClientSession, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(command[0], command[1:]...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "troy-test-client", Version: "1.0.0"}, opts)
	s, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v\nstderr:\n%s", strings.Join(command, " "), err, stderr)
	}
	return s, stderr
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func textOf(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// fsFixture is what server-filesystem serves in the tests: a work directory with a file and
// a secret, a private directory, and a policy that allows writes in work only, and none
// after a secret was read.
type fsFixture struct{ root, work, private, secret, policy string }

func newFSFixture(t *testing.T) fsFixture {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir()) // the server resolves symlinks in its roots
	if err != nil {
		t.Fatal(err)
	}
	work, private := filepath.Join(root, "work"), filepath.Join(root, "private")
	for _, d := range []string{work, private} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "notes.txt"), []byte("hello from the real server\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(work, "secrets", "key.txt")
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server may write in both directories; the policy allows writes in work only.
	policy := filepath.Join(root, "policy.json")
	cond := fmt.Sprintf("step.type == 'tool_call' and step.metadata.mcp_tool == 'write_file' and not matches(step.input.path, `^%s/`)", regexp.QuoteMeta(work))
	// A rule across steps: nothing is written once a secret has been read.
	crossStep := "step.metadata.mcp_tool == 'write_file' and any(prev_steps, .metadata.mcp_tool == 'read_text_file' and matches(.input.path, `/secrets/`))"
	pol := map[string]any{"policy_id": "mcp-files", "rules": []any{
		map[string]any{"rule_id": "write-outside-work", "description": "A file is written outside the work directory.",
			"condition": cond, "severity": "critical", "weight": 60},
		map[string]any{"rule_id": "write-after-secret", "description": "A file is written after a secret was read.",
			"condition": crossStep, "severity": "critical", "weight": 60},
	}}
	if err := os.WriteFile(policy, []byte(jsonOf(t, pol)), 0o644); err != nil {
		t.Fatal(err)
	}
	return fsFixture{root: root, work: work, private: private, secret: secret, policy: policy}
}

func TestMCPFilesystemGuarded(t *testing.T) {
	modules := mcpServers(t)
	bin := troyctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	fx := newFSFixture(t)
	root, work, private, secret, policy := fx.root, fx.work, fx.private, fx.secret, fx.policy
	server := mcpServerCmd(modules, "server-filesystem", work, private)
	reports := filepath.Join(root, "report")

	direct, _ := mcpConnect(t, ctx, nil, server...)
	defer direct.Close()
	proxied, stderr := mcpConnect(t, ctx, nil, append([]string{bin, "mcp", "--policy", policy, "--data-dir", filepath.Join(root, "data"), "-o", reports, "--"}, server...)...)

	tools, err := proxied.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"read_text_file", "write_file"} {
		if !slices.Contains(names, want) {
			t.Fatalf("tools/list through the proxy: no %s in %v", want, names)
		}
	}

	read := &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(work, "notes.txt")}}
	got, err := proxied.CallTool(ctx, read)
	if err != nil {
		t.Fatalf("read_text_file through the proxy: %v", err)
	}
	want, err := direct.CallTool(ctx, read)
	if err != nil {
		t.Fatalf("read_text_file directly: %v", err)
	}
	if got.IsError || !strings.Contains(textOf(got), "hello from the real server") || jsonOf(t, got) != jsonOf(t, want) {
		t.Fatalf("read_text_file through the proxy:\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
	}

	inside := filepath.Join(work, "allowed.txt")
	res, err := proxied.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": inside, "content": "fine"}})
	if err != nil || res.IsError {
		t.Fatalf("write_file in work: %v %s", err, jsonOf(t, res))
	}
	if b, err := os.ReadFile(inside); err != nil || string(b) != "fine" {
		t.Fatalf("write_file in work: the file holds %q (%v)", b, err)
	}

	outside := filepath.Join(private, "stolen.txt")
	res, err = proxied.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": outside, "content": "exfiltrated"}})
	if err != nil {
		t.Fatalf("write_file outside work: a blocked call must be a failed tool call, not a protocol error: %v", err)
	}
	if !res.IsError || !strings.Contains(textOf(res), "write-outside-work") || !strings.Contains(textOf(res), "outside the work directory") {
		t.Fatalf("write_file outside work: want isError with the policy's reason, got %s", jsonOf(t, res))
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Fatalf("a blocked write_file reached the server: %s exists (%v)", outside, err)
	}

	// The same write as the allowed one, after a secret was read, is blocked.
	if res, err := proxied.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": secret}}); err != nil || res.IsError {
		t.Fatalf("read the secret: %v %s", err, jsonOf(t, res))
	}
	res, err = proxied.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": inside, "content": "leaked"}})
	if err != nil || !res.IsError || !strings.Contains(textOf(res), "write-after-secret") {
		t.Fatalf("write_file after the secret was read: want blocked by write-after-secret, got %v %s", err, jsonOf(t, res))
	}
	if b, _ := os.ReadFile(inside); string(b) != "fine" {
		t.Fatalf("a blocked write_file reached the server: %s holds %q", inside, b)
	}

	if err := proxied.Close(); err != nil {
		t.Fatalf("close the proxied session: %v\nstderr:\n%s", err, stderr)
	}
	// troyctl has exited: the session's report is written.
	raw, err := os.ReadFile(filepath.Join(reports, "audit.json"))
	if err != nil {
		t.Fatalf("the session's audit.json: %v\nstderr:\n%s", err, stderr)
	}
	var audit schemas.AuditResult
	if err := json.Unmarshal(raw, &audit); err != nil {
		t.Fatal(err)
	}
	if audit.Trace.AgentName != "troy-test-client" {
		t.Errorf("agent: got %q, want the client's clientInfo.name", audit.Trace.AgentName)
	}
	var steps []string
	var blockedSteps []string
	for _, s := range audit.Trace.Steps {
		steps = append(steps, s.Type+":"+s.Description)
		if s.Description == "write_file" && (s.Input["path"] == outside || s.Input["content"] == "leaked") {
			blockedSteps = append(blockedSteps, s.StepID)
		}
		if s.Type == schemas.StepToolCall && (s.Metadata["mcp_server"] != "server-filesystem" || s.Metadata["mcp_tool"] != s.Description) {
			t.Errorf("step %s metadata: got %v", s.StepID, s.Metadata)
		}
		switch s.Description {
		case "read_text_file":
			if wantText := map[any]string{secret: "s3cr3t"}[s.Input["path"]]; !strings.Contains(jsonOf(t, s.Output), cmp.Or(wantText, "hello from the real server")) {
				t.Errorf("read_text_file's output was not recorded: %v", s.Output)
			}
		case "tools/list":
			if !strings.Contains(jsonOf(t, s.Output), `"name":"write_file"`) || !strings.Contains(jsonOf(t, s.Output), `"inputSchema"`) {
				t.Errorf("tools/list's output lacks the tools: %.300s", jsonOf(t, s.Output))
			}
		}
	}
	wantSteps := []string{"observation:tools/list", "tool_call:read_text_file", "tool_call:write_file", "tool_call:write_file",
		"tool_call:read_text_file", "tool_call:write_file"}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps: got %v, want %v", steps, wantSteps)
	}
	var violations []string
	for _, v := range audit.Violations {
		violations = append(violations, v.RuleID+"@"+v.StepID)
	}
	if len(blockedSteps) != 2 || !slices.Equal(violations, []string{"write-outside-work@" + blockedSteps[0], "write-after-secret@" + blockedSteps[1]}) {
		t.Errorf("violations: got %v, want write-outside-work and write-after-secret at the blocked steps %v", violations, blockedSteps)
	}
	md, err := os.ReadFile(filepath.Join(reports, "report.md"))
	if err != nil || !strings.Contains(string(md), "write-outside-work") || !strings.Contains(string(md), "write-after-secret") {
		t.Errorf("report.md does not name the block: %v\n%s", err, md)
	}
}

func TestMCPEverythingPassesThrough(t *testing.T) {
	modules := mcpServers(t)
	bin := troyctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server := mcpServerCmd(modules, "server-everything")
	data := t.TempDir()

	// The SDK hands progress notifications to their handler on its own goroutine, which
	// may run after the call has returned: they are collected on a channel.
	connect := func(command ...string) (*mcp.ClientSession, chan float64, *syncBuffer) {
		progress := make(chan float64, 100)
		opts := &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			progress <- r.Params.Progress
		}}
		cs, stderr := mcpConnect(t, ctx, opts, command...)
		return cs, progress, stderr
	}
	direct, directSeen, _ := connect(server...)
	defer direct.Close()
	proxied, proxiedSeen, stderr := connect(append([]string{bin, "mcp", "--data-dir", data, "--"}, server...)...)
	defer proxied.Close()

	calls := []struct {
		name string
		do   func(*mcp.ClientSession) (any, error)
	}{
		{"tools/call echo", func(s *mcp.ClientSession) (any, error) {
			return s.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "through troy"}})
		}},
		{"tools/call get-sum", func(s *mcp.ClientSession) (any, error) {
			return s.CallTool(ctx, &mcp.CallToolParams{Name: "get-sum", Arguments: map[string]any{"a": 2, "b": 40}})
		}},
		{"resources/list", func(s *mcp.ClientSession) (any, error) { return s.ListResources(ctx, nil) }},
		{"prompts/list", func(s *mcp.ClientSession) (any, error) { return s.ListPrompts(ctx, nil) }},
		{"tools/call with progress", func(s *mcp.ClientSession) (any, error) {
			p := &mcp.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 1, "steps": 3}}
			p.SetProgressToken("progress-1")
			return s.CallTool(ctx, p)
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			want, err := c.do(direct)
			if err != nil {
				t.Fatalf("directly: %v", err)
			}
			got, err := c.do(proxied)
			if err != nil {
				t.Fatalf("through the proxy: %v\nstderr:\n%s", err, stderr)
			}
			if jsonOf(t, got) != jsonOf(t, want) {
				t.Fatalf("through the proxy:\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
			}
			if strings.Contains(jsonOf(t, got), `"isError":true`) {
				t.Fatalf("the call failed: %s", jsonOf(t, got))
			}
		})
	}
	// Progress notifications reached the client through the proxy as they did directly:
	// the operation has three steps.
	collect := func(ch chan float64) []float64 {
		var got []float64
		for len(got) < 3 {
			select {
			case p := <-ch:
				got = append(got, p)
			case <-ctx.Done():
				return got
			}
		}
		return got
	}
	want, got := collect(directSeen), collect(proxiedSeen)
	if !slices.Equal(want, []float64{1, 2, 3}) || !slices.Equal(got, want) {
		t.Errorf("progress notifications: through the proxy %v, directly %v", got, want)
	}
}

// TestMCPProxyBadInput sends a real server, through the proxy, what a broken or hostile
// client might: the proxy answers what it cannot relay safely and goes on.
func TestMCPProxyBadInput(t *testing.T) {
	modules := mcpServers(t)
	bin := troyctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, append([]string{"mcp", "--max-message", "4096", "--data-dir", filepath.Join(dir, "data"), "--"},
		mcpServerCmd(modules, "server-filesystem", dir)...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	batched := filepath.Join(dir, "batched.txt")
	big := filepath.Join(dir, "big.txt")
	bigText := strings.Repeat("a line of a large file\n", 1000)
	if err := os.WriteFile(big, []byte(bigText), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`this is not JSON`,
		`[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"write_file","arguments":{"path":` + jsonOf(t, batched) + `,"content":"x"}}}]`,
		// A key spelled another way is refused, with the message's id: a server matching keys
		// case-insensitively would read it as the key the guard reads.
		`{"jsonrpc":"2.0","id":6,"method":"ping","Method":"tools/call","params":{"name":"bash","arguments":{}}}`,
		// A tool the default policy blocks.
		`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"bash","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5000) + `"}}`,
		// An answer over the limit: relayed whole, unread.
		`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":` + jsonOf(t, big) + `}}}`,
		`{"jsonrpc":"2.0","id":8,"method":"ping"}`,
	}
	go func() {
		for _, l := range lines {
			stdin.Write([]byte(l + "\n"))
		}
	}()
	type reply struct {
		ID     json.RawMessage `json:"id"`
		Result map[string]any  `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	replies := make(chan reply)
	go func() {
		defer close(replies)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r reply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("stdout holds a line that is not JSON-RPC: %q", sc.Text())
				continue
			}
			replies <- r
		}
	}()
	var got []reply
	for seen := 0; seen < 2; {
		select {
		case r, ok := <-replies:
			if !ok {
				t.Fatalf("stdout ended early; replies %+v\nstderr:\n%s", got, stderr)
			}
			got = append(got, r)
			if string(r.ID) == "8" || string(r.ID) == "9" {
				seen++
			}
		case <-ctx.Done():
			t.Fatalf("no answer to the last ping or the large read; replies %+v\nstderr:\n%s", got, stderr)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("troyctl mcp: %v\nstderr:\n%s", err, stderr)
	}

	var codes []int
	var blocked, large, respelled string
	for _, r := range got {
		switch {
		case r.Error != nil && string(r.ID) == "null":
			codes = append(codes, r.Error.Code)
		case string(r.ID) == "6":
			respelled = jsonOf(t, r)
		case string(r.ID) == "10":
			blocked = jsonOf(t, r.Result)
		case string(r.ID) == "9":
			large = jsonOf(t, r.Result)
		}
	}
	if !strings.Contains(large, jsonOf(t, bigText)[1:len(jsonOf(t, bigText))-1]) {
		t.Errorf("an answer over the limit did not reach the client whole: %d bytes", len(large))
	}
	// Its step records that it was not read.
	audits, _ := filepath.Glob(filepath.Join(dir, "data", "reports", "raw", "*", "audit.json"))
	if len(audits) != 1 {
		t.Fatalf("the session's audit.json: %v", audits)
	}
	if raw, _ := os.ReadFile(audits[0]); !strings.Contains(string(raw), "relayed to the client unread") {
		t.Errorf("the large read's step does not say its answer went unread:\n%.2000s", raw)
	}
	if !slices.Equal(codes, []int{-32700, -32600, -32600}) {
		t.Errorf("the proxy's own error answers: got codes %v, want parse error, batch refused, message too long; replies %+v", codes, got)
	}
	if !strings.Contains(blocked, `"isError":true`) || !strings.Contains(blocked, "mcp-shell-tool") {
		t.Errorf("tools/call of bash: want blocked by the default policy, got %s", blocked)
	}
	if !strings.Contains(respelled, "-32600") || !strings.Contains(respelled, `another spelling of \"method\"`) {
		t.Errorf("a message with a Method key: want refused with its id, got %s", respelled)
	}
	if _, err := os.Stat(batched); !os.IsNotExist(err) {
		t.Errorf("a batched tools/call reached the server: %s exists", batched)
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestMCPTypeScriptClient runs the TypeScript SDK's client against server-filesystem
// through troyctl mcp (testdata/mcp/client.mjs holds its checks).
func TestMCPTypeScriptClient(t *testing.T) {
	modules := mcpServers(t)
	bin := troyctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fx := newFSFixture(t)
	reports := filepath.Join(fx.root, "report")
	script, err := filepath.Abs(filepath.Join("testdata", "mcp", "client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "node", script, modules, bin, fx.policy, fx.work, fx.private, reports).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(reports, "audit.json"))
	if err != nil {
		t.Fatalf("the session's audit.json: %v\n%s", err, out)
	}
	var audit schemas.AuditResult
	if err := json.Unmarshal(raw, &audit); err != nil {
		t.Fatal(err)
	}
	if audit.Trace.AgentName != "ts-client" || len(audit.Trace.Steps) != 3 || len(audit.Violations) != 1 || audit.Violations[0].RuleID != "write-outside-work" {
		t.Fatalf("the TypeScript client's session: agent %q, %d steps, violations %+v", audit.Trace.AgentName, len(audit.Trace.Steps), audit.Violations)
	}
}

// BenchmarkMCPToolCall measures a tools/call (server-everything's echo) from the Go SDK's
// client, directly and through troyctl mcp (local guard, the mcp template), and
// reports the latency's p50 and p99 beside the mean.
func BenchmarkMCPToolCall(b *testing.B) {
	modules := mcpServers(b)
	bin := troyctlBinary(b)
	server := mcpServerCmd(modules, "server-everything")
	stdio := func(command ...string) func() mcp.Transport {
		return func() mcp.Transport { return &mcp.CommandTransport{Command: exec.Command(command[0], command[1:]...)} }
	}
	overHTTP := func(proxied bool) func() mcp.Transport {
		return func() mcp.Transport {
			endpoint := startEverythingHTTP(b, modules)
			if proxied {
				proxy := exec.Command(bin, "mcp", "--listen", "127.0.0.1:0", "--upstream", endpoint, "--data-dir", b.TempDir(), "--insecure-no-auth")
				endpoint, _ = startLineProcess(b, proxy, `troy: guarding \S+ at (http://\S+)`)
			}
			return &mcp.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1}
		}
	}
	for _, bc := range []struct {
		name      string
		transport func() mcp.Transport
	}{
		{"direct", stdio(server...)},
		{"proxied", stdio(append([]string{bin, "mcp", "--data-dir", b.TempDir(), "--"}, server...)...)},
		{"http-direct", overHTTP(false)},
		{"http-proxied", overHTTP(true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			s, err := client.Connect(ctx, bc.transport(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "benchmark"}}
			for range 50 { // warm up node's JIT
				if _, err := s.CallTool(ctx, params); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := s.CallTool(ctx, params); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func TestMCPUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"mcp"}, "give the server's command after --"},
		{[]string{"mcp", "node", "server.js"}, "give the server's command after --"},
		{[]string{"mcp", "--policy", "no-such-policy", "--", "node"}, "--policy"},
		{[]string{"mcp", "--mode", "loud", "--", "node"}, `--mode "loud" is not one of enforce, monitor, dry-run`},
		{[]string{"mcp", "--", filepath.Join(t.TempDir(), "no-such-server")}, "start the server"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := troyctl(t, tt.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Fatalf("got exit %d, stdout %q, stderr %q; want a failure saying %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

// TestMCPToolChangeFlagged runs server-filesystem through the proxy twice on one data
// directory; between the runs, what the first remembered of read_text_file is altered, as
// if the server had changed the tool's description since: the second session's tools/list
// step names it in mcp_tools_changed, and the default policy (the mcp template) flags it.
func TestMCPToolChangeFlagged(t *testing.T) {
	modules := mcpServers(t)
	bin := troyctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fx := newFSFixture(t)
	data := filepath.Join(fx.root, "data")
	session := func(reports string) schemas.AuditResult {
		t.Helper()
		s, stderr := mcpConnect(t, ctx, nil, append([]string{bin, "mcp", "--data-dir", data, "-o", reports, "--"},
			mcpServerCmd(modules, "server-filesystem", fx.work)...)...)
		if _, err := s.ListTools(ctx, nil); err != nil {
			t.Fatalf("tools/list: %v\n%s", err, stderr)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v\n%s", err, stderr)
		}
		raw, err := os.ReadFile(filepath.Join(reports, "audit.json"))
		if err != nil {
			t.Fatalf("audit.json: %v\n%s", err, stderr)
		}
		var a schemas.AuditResult
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	changedOf := func(a schemas.AuditResult) string {
		if len(a.Trace.Steps) != 1 {
			t.Fatalf("want one tools/list step, got %d", len(a.Trace.Steps))
		}
		return jsonOf(t, a.Trace.Steps[0].Metadata["mcp_tools_changed"])
	}

	first := session(filepath.Join(fx.root, "r1"))
	if got := changedOf(first); got != "[]" || len(first.Violations) != 0 {
		t.Fatalf("first session: changed %s, violations %+v", got, first.Violations)
	}
	remembered := filepath.Join(data, "mcp", "server-filesystem.json")
	var f struct {
		Server string            `json:"server"`
		Tools  map[string]string `json:"tools"`
	}
	raw, err := os.ReadFile(remembered)
	if err != nil || json.Unmarshal(raw, &f) != nil || f.Tools["read_text_file"] == "" {
		t.Fatalf("the tools remembered: %v %s", err, raw)
	}
	f.Tools["read_text_file"] = strings.Repeat("0", 64)
	if err := os.WriteFile(remembered, []byte(jsonOf(t, f)), 0o644); err != nil {
		t.Fatal(err)
	}

	second := session(filepath.Join(fx.root, "r2"))
	if got := changedOf(second); got != `["read_text_file"]` || len(second.Violations) != 1 || second.Violations[0].RuleID != "mcp-tool-changed" {
		t.Fatalf("second session: changed %s, violations %+v", got, second.Violations)
	}
}

// A server that fails while the client is still connected fails the run.
func TestMCPServerFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, troyctlBinary(t), "mcp", "--data-dir", t.TempDir(), "--", "sh", "-c", "exit 3")
	stdin, err := cmd.StdinPipe() // kept open: the client stays
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `the server "sh" exited: exit status 3`) {
		t.Fatalf("got %v\n%s", err, out)
	}
}
