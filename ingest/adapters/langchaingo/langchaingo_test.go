package langchaingo_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tmc/langchaingo/agents"
	"github.com/tmc/langchaingo/chains"
	"github.com/tmc/langchaingo/llms/openai"
	"github.com/tmc/langchaingo/tools"

	"github.com/troy-audit/troy/ingest/adapters/langchaingo"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/adapter"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/llmtest"
	"github.com/troy-audit/troy/sdk/servetest"
)

// tool is a langchaingo tool that counts its calls.
type tool struct {
	name  string
	calls atomic.Int32
}

func (t *tool) Name() string        { return t.name }
func (t *tool) Description() string { return "runs " + t.name }
func (t *tool) Call(_ context.Context, input string) (string, error) {
	t.calls.Add(1)
	return t.name + " ran " + input, nil
}

// model is a scripted OpenAI-compatible server that asks for the bash tool, then answers.
func model(t *testing.T) *llmtest.Server {
	s := llmtest.NewServer(func(_ int, body string, w http.ResponseWriter, _ *http.Request) {
		if strings.Contains(body, "Action Input: ls -la") { // the scratchpad: the tool ran (or was asked for) before
			llmtest.Reply(w, body, "Thought: I know the answer.\nFinal Answer: the directory is listed")
			return
		}
		llmtest.Reply(w, body, "Thought: I should list the directory.\nAction: bash\nAction Input: ls -la")
	})
	t.Cleanup(s.Close)
	return s
}

// A real langchaingo agent against a real troyctl serve: the admin-only tool is blocked in
// enforce mode and runs in monitor mode with the callback fired; the session's report
// lists every step.
func TestLangchaingoAgent(t *testing.T) {
	srv := servetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := srv.Conn(t)
	m := model(t)
	for _, mode := range []string{schemas.ModeEnforce, schemas.ModeMonitor} {
		t.Run(mode, func(t *testing.T) {
			bash := &tool{name: "bash"}
			var violations []schemas.Decision
			a := langchaingo.New(conn, adapter.Options{Agent: "lc-bot", Mode: mode, MetadataFn: servetest.AdminBash,
				OnViolation: func(d schemas.Decision) { violations = append(violations, d) }})
			// The LLM takes the handler too: its calls are recorded as steps.
			llm, err := openai.New(openai.WithBaseURL(m.URL+"/v1"), openai.WithToken("test"), openai.WithModel("gpt-4o-mini"), openai.WithCallback(a))
			if err != nil {
				t.Fatal(err)
			}
			executor := agents.NewExecutor(agents.NewOneShotAgent(llm, a.Tools([]tools.Tool{bash, &tool{name: "search"}}),
				agents.WithCallbacksHandler(a)), agents.WithCallbacksHandler(a), agents.WithMaxIterations(3))
			answer, err := chains.Run(ctx, executor, "what is in the directory?")
			var blocked *agent.BlockedError
			switch mode {
			case schemas.ModeEnforce:
				if !errors.As(err, &blocked) || bash.calls.Load() != 0 {
					t.Fatalf("enforce: %v (bash ran %d times)", err, bash.calls.Load())
				}
			default:
				if err != nil || answer != "the directory is listed" || bash.calls.Load() != 1 {
					t.Fatalf("monitor: %q %v (bash ran %d times)", answer, err, bash.calls.Load())
				}
			}
			if len(violations) != 1 || violations[0].Violations[0].RuleID != "privileged-escalation-guard" {
				t.Fatalf("callback: %+v", violations)
			}
			steps, audit := srv.Steps(t, a.ID())
			want := "llm_call:llm tool_call:bash"
			if mode == schemas.ModeMonitor {
				want = "llm_call:llm tool_call:bash llm_call:llm"
			}
			if strings.Join(steps, " ") != want {
				t.Fatalf("the report's steps: %v, want %s", steps, want)
			}
			if mode == schemas.ModeMonitor && audit.Trace.Steps[1].Output["result"] != "bash ran ls -la" {
				t.Fatalf("the tool's result was not recorded: %v", audit.Trace.Steps[1].Output)
			}
		})
	}
}

// A rule that cannot be evaluated for a tool call blocks it in enforce mode; the blocked
// error's decision names the rule (a limit compared with a number, given a string).
func TestLangchaingoRuleErrorBlocks(t *testing.T) {
	srv := servetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	policy := filepath.Join(t.TempDir(), "limit.json")
	if err := os.WriteFile(policy, []byte(`{"rules": [{"rule_id": "limit", "description": "over the limit", "condition": "step.metadata.limit > 5"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bash := &tool{name: "lookup"}
	var violations []schemas.Decision
	a := langchaingo.New(srv.Conn(t), adapter.Options{Agent: "lc-rules", Policy: srv.PutPolicy(t, policy),
		MetadataFn:  func(string, map[string]any, string) map[string]any { return map[string]any{"limit": "high"} },
		OnViolation: func(d schemas.Decision) { violations = append(violations, d) }})
	_, err := a.Tools([]tools.Tool{bash})[0].Call(ctx, "ls -la")
	var blocked *agent.BlockedError
	if !errors.As(err, &blocked) || bash.calls.Load() != 0 {
		t.Fatalf("got %v (bash ran %d times), want blocked", err, bash.calls.Load())
	}
	d := blocked.Decision
	if d.Allowed || len(d.Violations) != 0 || len(d.RuleErrors) != 1 || d.RuleErrors[0].RuleID != "limit" {
		t.Fatalf("decision %+v", d)
	}
	if !strings.Contains(err.Error(), "rule limit could not be evaluated: line 1, column 21: invalid operation: string > int") || len(violations) != 0 {
		t.Fatalf("error %v, callbacks %+v", err, violations)
	}
}
