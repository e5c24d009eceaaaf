package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

const token = "s3cret-token"

// deployment runs the pipeline with the guard on an in-memory bus, and the gateway over it.
func deployment(t *testing.T) *httptest.Server {
	srv, _ := deploymentWithBus(t)
	return srv
}

func deploymentWithBus(t testing.TB) (*httptest.Server, *bus.Bus) {
	t.Helper()
	g, b := newGateway(t, gateway.Config{MaxBody: 4096})
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, b
}

// newGateway runs the pipeline with the guard on an in-memory bus, and returns a gateway
// over it with cfg and the test's tokens.
func newGateway(t testing.TB, cfg gateway.Config) (*gateway.Gateway, *bus.Bus) {
	t.Helper()
	return newGatewayOn(t, bus.Options{Memory: true}, pipeline.Config{ReportDir: t.TempDir(), ExplainNote: "off"}, cfg)
}

// newGatewayOn is newGateway with a bus and a pipeline of the caller's choice.
func newGatewayOn(t testing.TB, opts bus.Options, pcfg pipeline.Config, cfg gateway.Config) (*gateway.Gateway, *bus.Bus) {
	t.Helper()
	b, err := bus.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	pol := pipeline.NewPolicies(b)
	p, err := policies.Resolve("../../examples/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := pol.SetDefault(ctx, c); err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.New(b, pol, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	<-pl.Ready()
	for _, plain := range []string{"other", token} { // plain tokens: admins
		tok, err := gateway.PlainToken(plain)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = append(cfg.Tokens, tok)
	}
	g, err := gateway.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	return g, b
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func call(t *testing.T, srv *httptest.Server, method, path, auth, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func errorCode(r response) string {
	e, _ := r.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestRejects(t *testing.T) {
	srv := deployment(t)
	check := `{"session": "s", "agent": "a", "step": {"action": "read"}}`
	tests := []struct {
		name, auth, body string
		status           int
		code             string
	}{
		{"no token", "", check, 401, "unauthorized"},
		{"wrong token", "s3cret-tokeN", check, 401, "unauthorized"},
		{"a prefix of the token", "s3cret", check, 401, "unauthorized"},
		{"malformed JSON", token, `{"session": `, 400, "bad_json"},
		{"not an object", token, `[1, 2]`, 400, "bad_json"},
		{"oversize", token, `{"session": "` + strings.Repeat("x", 5000) + `"}`, 413, "too_large"},
		{"the guard refuses", token, `{"session": "s", "step": {}}`, 400, "guard"},
	}
	for _, tt := range tests {
		r := call(t, srv, "POST", "/v1/guard/check", tt.auth, tt.body)
		if r.status != tt.status || errorCode(r) != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.raw, tt.status, tt.code)
		}
	}
	if r := call(t, srv, "POST", "/v1/steps", token, `{"trace_id": "t", "agent": "a", "run": "r", "seq": 0, "step": {"step_id": "s", "type": "tool"}}`); r.status != 400 || !strings.Contains(r.raw, `step.type \"tool\"`) {
		t.Errorf("bad step: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "GET", "/v1/traces/none/report?agent=a", token, ""); r.status != 404 || errorCode(r) != "not_found" {
		t.Errorf("no report: %d %s", r.status, r.raw)
	}
	// Errors of routing are JSON too.
	if r := call(t, srv, "POST", "/v1/nothing", token, "{}"); r.status != 404 || errorCode(r) != "not_found" {
		t.Errorf("no such endpoint: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "GET", "/v1/steps", token, ""); r.status != 405 || errorCode(r) != "method_not_allowed" {
		t.Errorf("a wrong method: %d %s", r.status, r.raw)
	}
}

// A trace id is any string, "/" included: a session named "/" is checked, ended and
// reported over HTTP (its decoded path has an empty segment, which the router skips).
func TestTraceIDOfASlash(t *testing.T) {
	srv := deployment(t)
	if r := call(t, srv, "POST", "/v1/guard/check", token, `{"session": "/", "agent": "bot", "step": {"action": "read"}}`); r.status != 200 {
		t.Fatalf("check: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", "/v1/traces/%2F/end", token, `{"agent": "bot"}`); r.status != 202 {
		t.Fatalf("end: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", "/v1/traces/%2F/end", "", `{"agent": "bot"}`); r.status != 401 {
		t.Fatalf("end without a token: %d %s", r.status, r.raw)
	}
	if a := waitReport(t, srv, "/v1/traces/%2F/report?agent=bot"); a.Trace.TraceID != "/" || len(a.Trace.Steps) != 1 {
		t.Fatalf("report: %+v", a.Trace)
	}
}

func TestOpenAPIDocument(t *testing.T) {
	srv := deployment(t)
	r := call(t, srv, "GET", "/v1/openapi.json", "", "")
	if r.status != 200 || r.body["openapi"] != "3.0.3" {
		t.Fatalf("%d %s", r.status, r.raw[:min(200, len(r.raw))])
	}
	paths, _ := r.body["paths"].(map[string]any)
	for _, p := range []string{"/v1/guard/check", "/v1/steps", "/v1/traces/{id}/output", "/v1/traces/{id}/end", "/v1/traces/{id}/report", "/v1/policies/{hash}"} {
		if paths[p] == nil {
			t.Errorf("the document lacks %s", p)
		}
	}
	if !bytes.Equal([]byte(r.raw), gateway.OpenAPI) {
		t.Error("the served document is not the one in the repository")
	}
}

// waitReport polls for a finished trace's audit, for at most ten seconds.
func waitReport(t *testing.T, srv *httptest.Server, path string) schemas.AuditResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := call(t, srv, "GET", path, token, "")
		if r.status == 200 {
			var a schemas.AuditResult
			if err := pyjson.Unmarshal([]byte(r.raw), &a); err != nil {
				t.Fatal(err)
			}
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report at %s: %d %s", path, r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond) // polling for the pipeline's result, bounded by the deadline
	}
}

// A guarded session over HTTP: allowed, blocked in enforce mode, allowed with the
// violation in monitor mode, an output recorded, the session ended and reported.
func TestGuardSession(t *testing.T) {
	srv := deployment(t)
	check := func(action, meta, mode string) schemas.Decision {
		t.Helper()
		r := call(t, srv, "POST", "/v1/guard/check", token, fmt.Sprintf(`{"session": "sess-1", "agent": "bot", "mode": %q, "step": {"action": %q, "metadata": %s}}`, mode, action, meta))
		if r.status != 200 {
			t.Fatalf("%s: %d %s", action, r.status, r.raw)
		}
		var d schemas.Decision
		if err := json.Unmarshal([]byte(r.raw), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := check("get_profile", `{"data_classification": "pii", "network_zone": "internal"}`, "enforce")
	if !first.Allowed {
		t.Fatalf("read blocked: %+v", first)
	}
	// Rules read metadata these steps do not carry: said once, for the keys never seen.
	missing := map[string]bool{}
	for _, m := range first.MissingMetadata {
		missing[m.Key] = true
	}
	if !missing["permission_level"] || missing["data_classification"] || missing["network_zone"] {
		t.Fatalf("missing metadata: %+v", first.MissingMetadata)
	}
	if r := call(t, srv, "POST", "/v1/traces/sess-1/output", token, fmt.Sprintf(`{"agent": "bot", "step_id": %q, "output": {"email": "a@b.c"}}`, first.StepID)); r.status != 202 {
		t.Fatalf("output: %d %s", r.status, r.raw)
	}
	if d := check("bash", `{"permission_level": "admin"}`, "enforce"); d.Allowed || len(d.Violations) == 0 || len(d.MissingMetadata) != 0 {
		t.Fatalf("an admin tool allowed in enforce mode: %+v", d)
	}
	if d := check("bash", `{"permission_level": "admin"}`, "monitor"); !d.Allowed || len(d.Violations) == 0 {
		t.Fatalf("monitor mode: %+v", d)
	}
	if r := call(t, srv, "POST", "/v1/traces/sess-1/end", token, `{"agent": "bot"}`); r.status != 202 {
		t.Fatalf("end: %d %s", r.status, r.raw)
	}
	a := waitReport(t, srv, "/v1/traces/sess-1/report?agent=bot")
	if len(a.Trace.Steps) != 3 || a.Trace.Steps[0].Output["email"] != "a@b.c" || len(a.Violations) == 0 || a.RiskScore == 0 || a.Info == nil || a.Info.PolicyID != "example-agent-policy" {
		t.Fatalf("report: %d steps, output %v, violations %v, risk %d, info %+v", len(a.Trace.Steps), a.Trace.Steps[0].Output, a.Violations, a.RiskScore, a.Info)
	}
}

// A trace published step by step over HTTP is evaluated and reported like any other.
func TestPublishedTrace(t *testing.T) {
	srv := deployment(t)
	steps := []string{
		`{"step_id": "s1", "type": "tool_call", "description": "get_customer", "input": {"id": 7}, "output": {}, "metadata": {"data_classification": "pii"}}`,
		`{"step_id": "s2", "type": "tool_call", "description": "http_post", "input": {}, "output": {}, "metadata": {"network_zone": "external"}}`,
	}
	for i, s := range steps {
		body := fmt.Sprintf(`{"trace_id": "t-9", "agent": "bot", "run": "r1", "seq": %d, "trace_metadata": {"agent_version": "1.2"}, "step": %s}`, i, s)
		if r := call(t, srv, "POST", "/v1/steps", token, body); r.status != 202 {
			t.Fatalf("step %d: %d %s", i, r.status, r.raw)
		}
	}
	if r := call(t, srv, "POST", "/v1/traces/t-9/output", token, `{"agent": "bot", "run": "r1", "step_id": "s1", "output": {"name": "Jane"}}`); r.status != 202 {
		t.Fatalf("output: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", "/v1/traces/t-9/end", token, `{"agent": "bot", "run": "r1", "steps": 2}`); r.status != 202 {
		t.Fatalf("end: %d %s", r.status, r.raw)
	}
	a := waitReport(t, srv, "/v1/traces/t-9/report?agent=bot&run=r1")
	if len(a.Trace.Steps) != 2 || a.Trace.Steps[0].Output["name"] != "Jane" || a.Trace.Metadata["agent_version"] != "1.2" || len(a.Violations) != 1 || a.Violations[0].StepID != "s1" {
		t.Fatalf("report: %+v", a)
	}
}

// HTTP clients that hold requests open (slow bodies) do not slow the NATS path: the
// gateway only forwards, over its own connection.
func TestSlowHTTPClientsDoNotBlockNATS(t *testing.T) {
	srv, b := deploymentWithBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var held []io.WriteCloser
	for range 64 {
		pr, pw := io.Pipe()
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/guard/check", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		_, _ = pw.Write([]byte(`{"session": "slow", `)) // and nothing more for now
		held = append(held, pw)
	}
	defer func() {
		for _, w := range held {
			w.Close()
		}
	}()
	g := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "nats-side", Agent: "bot", Timeout: 2 * time.Second})
	for i := range 20 {
		if _, err := g.Check(ctx, fmt.Sprint("search-", i), nil, nil, ""); err != nil {
			t.Fatalf("check %d over NATS while HTTP clients hold requests: %v", i, err)
		}
	}
}

// Ids longer than the rules allow are refused with a 400 at every endpoint, and the
// gateway and its guard go on answering.
func TestLongIDsAreRefused(t *testing.T) {
	srv := deployment(t)
	long := strings.Repeat("z", schemas.MaxIDLength+1)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/guard/check", `{"session": "` + long + `", "agent": "a", "step": {"action": "read"}}`},
		{"POST", "/v1/guard/check", `{"session": "s", "agent": "a\u001b[2J", "step": {"action": "read"}}`},
		{"POST", "/v1/steps", `{"trace_id": "` + long + `", "agent": "a", "run": "r", "seq": 0, "step": {"step_id": "s", "type": "tool_call"}}`},
		{"POST", "/v1/steps", `{"trace_id": "t", "agent": "a", "run": "r", "seq": 0, "step": {"step_id": "` + long + `", "type": "tool_call"}}`},
		{"POST", "/v1/traces/" + long + "/output", `{"agent": "a", "step_id": "s", "output": {}}`},
		{"POST", "/v1/traces/t/end", `{"agent": "` + long + `"}`},
		{"GET", "/v1/traces/t/report?agent=" + long, ``},
	} {
		r := call(t, srv, c.method, c.path, token, c.body)
		if r.status != 400 || !strings.Contains(r.raw, "limit for ids") && !strings.Contains(r.raw, "control character") {
			t.Errorf("%s %.40s: %d %s, want a 400 naming the id's rule", c.method, c.path, r.status, r.raw)
		}
	}
	if r := call(t, srv, "POST", "/v1/guard/check", token, `{"session": "s", "agent": "a", "step": {"action": "read"}}`); r.status != 200 {
		t.Fatalf("a check after them: %d %s", r.status, r.raw)
	}
}
