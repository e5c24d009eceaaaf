// Package jstest_test runs real JavaScript OpenTelemetry instrumentations from npm under
// node: LangChain.js traced by OpenInference's and by OpenLLMetry's instrumentations,
// and the Vercel AI SDK with its telemetry on, each agent calling a scripted
// OpenAI-compatible model and exporting its spans over OTLP/HTTP (protobuf, with a
// gateway token) to a real troyctl serve, whose reports are checked: what the libraries
// really emit, mapped by ingest/otel.
package jstest_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/npmtest"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/llmtest"
	"github.com/troy-audit/troy/sdk/servetest"
)

// What the scripted model makes the agent do: post a person's e-mail address outside.
const (
	postURL   = "https://crm.example-partner.io/v1/contacts"
	postEmail = "jane.doe@example.com"
	ruleID    = "email-to-outbound-tool"
)

// nodeModules installs testdata's package-lock.json with npm ci, once per lock file, and
// returns its node_modules.
func nodeModules(t *testing.T) string {
	t.Helper()
	files := map[string][]byte{}
	sum := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
		sum.Write(data)
	}
	return npmtest.Install(t, "otel-js-"+hex.EncodeToString(sum.Sum(nil)[:8]), files, "ci")
}

// scriptedAgent answers a conversation with no tool result yet with a call of http_post
// holding an e-mail address, and one with a tool result with a final answer.
func scriptedAgent(_ int, body string, w http.ResponseWriter, _ *http.Request) {
	if strings.Contains(body, `"role":"tool"`) {
		llmtest.Answer(w, "Jane Doe was added to the CRM.")
		return
	}
	args, _ := json.Marshal(map[string]any{"url": postURL, "body": map[string]any{"name": "Jane Doe", "email": postEmail}})
	llmtest.CallTool(w, "call_http_post", "http_post", string(args))
}

// workDir holds the node scripts beside a link to the installed node_modules, where
// node's module resolution finds them.
func workDir(t *testing.T, modules string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Glob(filepath.Join("testdata", "*.mjs"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no node scripts in testdata: %v", err)
	}
	for _, s := range append(scripts, filepath.Join("testdata", "package.json")) {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(s)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runNode runs a script and returns the trace ids it printed.
func runNode(ctx context.Context, t *testing.T, dir, script string, env ...string) []string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "NODE_NO_WARNINGS=1")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s%s", script, err, out, stderr.String())
	}
	t.Logf("node %s:\n%s", script, stderr.String())
	var printed struct {
		TraceIDs []string `json:"traceIds"`
	}
	var last string
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		last = sc.Text()
	}
	if err := json.Unmarshal([]byte(last), &printed); err != nil || len(printed.TraceIDs) == 0 {
		t.Fatalf("node %s printed no trace ids (%v):\n%s", script, err, out)
	}
	return printed.TraceIDs
}

// report waits, bounded, for the report serve writes of a trace with steps steps, and
// returns it. Spans are exported as they end, each in a request of its own, so one may
// come after the root's and make a second report of the trace.
func report(t *testing.T, s *servetest.Serve, agentName, traceID string, steps int) *schemas.AuditResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *schemas.Trace
	for {
		matches, _ := filepath.Glob(filepath.Join(s.DataDir, "reports", agentName, "*"+traceID+"*", "audit.json"))
		if len(matches) == 1 {
			raw, err := os.ReadFile(matches[0])
			var audit schemas.AuditResult
			if err == nil && pyjson.Unmarshal(raw, &audit) == nil && audit.Trace != nil {
				if len(audit.Trace.Steps) == steps {
					return &audit
				}
				last = audit.Trace
			}
		}
		if time.Now().After(deadline) {
			raw, _ := json.MarshalIndent(last, "", "  ")
			t.Fatalf("no report of %s/%s with %d steps; the last read:\n%s\n%s", agentName, traceID, steps, raw, s.Log())
		}
		time.Sleep(50 * time.Millisecond) // polling for the reporter's file, bounded by the deadline
	}
}

// checkRun asserts what every instrumented run must give: a model call, then the
// http_post tool call with the arguments the model chose, the policy's violation at it;
// and, where the convention records the reply's tool calls (choice), the model's
// decision to call http_post between them.
func checkRun(t *testing.T, audit *schemas.AuditResult, choice bool) *schemas.Step {
	t.Helper()
	var steps []string
	var post, llm, decision *schemas.Step
	for _, st := range audit.Trace.Steps {
		steps = append(steps, st.Type+":"+st.Description)
		switch {
		case st.Type == "tool_call" && st.Description == "http_post" && post == nil:
			post = st
		case st.Type == "llm_call" && post == nil && llm == nil:
			llm = st
		case st.Type == "decision" && post == nil && decision == nil:
			decision = st
		}
	}
	if choice {
		var args map[string]any
		if decision != nil {
			if calls, _ := decision.Output["tool_calls"].([]any); len(calls) > 0 {
				first, _ := calls[0].(map[string]any)
				args, _ = first["arguments"].(map[string]any)
			}
		}
		if decision == nil || decision.Output["choice"] != "http_post" || args["url"] != postURL ||
			decision.ParentStepID == nil || llm == nil || *decision.ParentStepID != llm.StepID {
			raw, _ := json.MarshalIndent(audit.Trace, "", "  ")
			t.Fatalf("want the model's decision to call http_post after its call; steps %v:\n%s", steps, raw)
		}
	}
	t.Logf("steps: %v", steps)
	if post == nil || llm == nil {
		raw, _ := json.MarshalIndent(audit.Trace, "", "  ")
		t.Fatalf("want an llm_call, then a tool_call http_post; steps %v:\n%s", steps, raw)
	}
	// The messages sent to the model, whichever attributes the convention put them in.
	if raw, _ := json.Marshal(llm.Input["messages"]); !strings.Contains(string(raw), "Add Jane Doe") {
		t.Errorf("the model call's input: %v, want the user's message", llm.Input)
	}
	body, _ := post.Input["body"].(map[string]any)
	if post.Input["url"] != postURL || body["email"] != postEmail {
		t.Errorf("http_post's input: %v, want the url and body the model gave", post.Input)
	}
	found := false
	for _, v := range audit.Violations {
		found = found || (v.RuleID == ruleID && v.StepID == post.StepID)
	}
	if !found || audit.RiskScore == 0 {
		t.Errorf("violations %+v, risk %d: want %s at step %s (http_post)", audit.Violations, audit.RiskScore, ruleID, post.StepID)
	}
	return post
}

// checkResult asserts that the tool's result is what http_post returned, out of the
// LangChain ToolMessage that carried it.
func checkResult(t *testing.T, post *schemas.Step) {
	t.Helper()
	if post.Output["status"] != 200 || post.Output["url"] != postURL {
		t.Errorf("http_post's output: %v, want the tool's result", post.Output)
	}
}

func TestJavaScriptInstrumentations(t *testing.T) {
	modules := nodeModules(t)
	dir := workDir(t, modules)
	model := llmtest.NewServer(scriptedAgent)
	defer model.Close()
	policy, err := filepath.Abs(filepath.Join("testdata", "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Each case's check looks at the http_post step as the library's convention gives it,
	// and returns what it saw, for a run of several traces to be checked whole.
	cases := []struct {
		name, script, agent string
		choice              bool     // the model's reply records its tool calls: a decision step
		want                []string // what check returns for each trace, sorted
		check               func(t *testing.T, post *schemas.Step) string
	}{
		{"langchain openinference", "langchain-openinference.mjs", "langchain-openinference", true, []string{"TOOL"}, func(t *testing.T, post *schemas.Step) string {
			if post.Metadata["otel.scope.name"] != "@arizeai/openinference-instrumentation-langchain" {
				t.Errorf("http_post's scope: %v", post.Metadata["otel.scope.name"])
			}
			checkResult(t, post)
			return fmt.Sprint(post.Metadata["openinference.span.kind"])
		}},
		{"langchain traceloop", "langchain-traceloop.mjs", "langchain-traceloop", false, []string{"task"}, func(t *testing.T, post *schemas.Step) string {
			// The instrumentation names the tool after its class; the name comes from the
			// ToolMessage the tool returned.
			if post.Metadata["traceloop.entity.name"] != "DynamicStructuredTool" || post.Metadata["otel.scope.name"] != "@traceloop/instrumentation-langchain" {
				t.Errorf("http_post's metadata: %v", post.Metadata)
			}
			checkResult(t, post)
			return fmt.Sprint(post.Metadata["traceloop.span.kind"])
		}},
		{"vercel ai", "vercel-ai.mjs", "vercel-ai", true, []string{"ai.toolCall", "execute_tool"}, func(t *testing.T, post *schemas.Step) string {
			// The OpenTelemetry integration's GenAI spans, or the legacy one's ai.* spans.
			if op, ok := post.Metadata["ai.operationId"]; ok {
				return fmt.Sprint(op)
			}
			return fmt.Sprint(post.Metadata["gen_ai.operation.name"])
		}},
	}
	var agents []string
	for _, c := range cases {
		agents = append(agents, c.agent)
	}
	s := servetest.StartWith(t, servetest.Options{Policy: policy, OTLPAgents: agents})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			traceIDs := runNode(ctx, t, dir, c.script, "TROY_OTLP_URL="+s.OTLP, "TROY_OTLP_TOKEN="+s.AgentTokens[c.agent],
				"TROY_SERVICE_NAME="+c.agent, "OPENAI_BASE_URL="+model.URL+"/v1")
			var seen []string
			for _, id := range traceIDs {
				// Each run: a model call, its decision where recorded, the tool call, a
				// model call.
				steps := 3
				if c.choice {
					steps++
				}
				seen = append(seen, c.check(t, checkRun(t, report(t, s, c.agent, id, steps), c.choice)))
			}
			slices.Sort(seen)
			if !slices.Equal(seen, c.want) {
				t.Errorf("traces %v gave %v, want %v", traceIDs, seen, c.want)
			}
		})
	}
}
