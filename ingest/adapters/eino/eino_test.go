package eino_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/eino-ext/components/model/openai"
	"github.com/cloudwego/eino/components/tool"
	"github.com/cloudwego/eino/compose"
	einoagent "github.com/cloudwego/eino/flow/agent"
	"github.com/cloudwego/eino/flow/agent/react"
	"github.com/cloudwego/eino/schema"

	"github.com/troy-audit/troy/ingest/adapters/eino"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/adapter"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/llmtest"
	"github.com/troy-audit/troy/sdk/servetest"
)

// shell is an eino tool that counts its calls.
type shell struct{ calls atomic.Int32 }

func (s *shell) Info(context.Context) (*schema.ToolInfo, error) {
	return &schema.ToolInfo{Name: "bash", Desc: "runs a shell command",
		ParamsOneOf: schema.NewParamsOneOfByParams(map[string]*schema.ParameterInfo{"cmd": {Type: schema.String, Desc: "the command"}})}, nil
}

func (s *shell) InvokableRun(_ context.Context, args string, _ ...tool.Option) (string, error) {
	s.calls.Add(1)
	return "listing of " + args, nil
}

// model is a scripted OpenAI-compatible server that calls the bash tool, then answers.
func model(t *testing.T) *llmtest.Server {
	s := llmtest.NewServer(func(_ int, body string, w http.ResponseWriter, _ *http.Request) {
		if strings.Contains(body, `"role":"tool"`) {
			llmtest.Answer(w, "the directory is listed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "scripted", "object": "chat.completion", "created": 0, "model": "scripted",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "tool_calls", "message": map[string]any{
				"role": "assistant", "content": "",
				"tool_calls": []any{map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "bash", "arguments": `{"cmd": "ls -la"}`}}},
			}}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
		})
	})
	t.Cleanup(s.Close)
	return s
}

// A real eino ReAct agent against a real troyctl serve: the admin-only tool is blocked in
// enforce mode and runs in monitor mode with the callback fired; the session's report
// lists every step.
func TestEinoAgent(t *testing.T) {
	srv := servetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := srv.Conn(t)
	m := model(t)
	chat, err := openai.NewChatModel(ctx, &openai.ChatModelConfig{BaseURL: m.URL + "/v1", APIKey: "test", Model: "gpt-4o-mini"})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{schemas.ModeEnforce, schemas.ModeMonitor} {
		t.Run(mode, func(t *testing.T) {
			sh := &shell{}
			var violations []schemas.Decision
			a := eino.New(conn, adapter.Options{Agent: "eino-bot", Mode: mode, MetadataFn: servetest.AdminBash,
				OnViolation: func(d schemas.Decision) { violations = append(violations, d) }})
			ag, err := react.NewAgent(ctx, &react.AgentConfig{ToolCallingModel: chat, ToolsConfig: compose.ToolsNodeConfig{Tools: a.Tools([]tool.BaseTool{sh})}, MaxStep: 6})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := ag.Generate(ctx, []*schema.Message{schema.UserMessage("what is in the directory?")},
				einoagent.WithComposeOptions(compose.WithCallbacks(a.Handler())))
			var blocked *agent.BlockedError
			switch mode {
			case schemas.ModeEnforce:
				if !errors.As(err, &blocked) || sh.calls.Load() != 0 {
					t.Fatalf("enforce: %v (bash ran %d times)", err, sh.calls.Load())
				}
			default:
				if err != nil || msg.Content != "the directory is listed" || sh.calls.Load() != 1 {
					t.Fatalf("monitor: %v %v (bash ran %d times)", msg, err, sh.calls.Load())
				}
			}
			if len(violations) != 1 || violations[0].Violations[0].RuleID != "privileged-escalation-guard" {
				t.Fatalf("callback: %+v", violations)
			}
			steps, _ := srv.Steps(t, a.ID())
			want := "llm_call:llm tool_call:bash"
			if mode == schemas.ModeMonitor {
				want = "llm_call:llm tool_call:bash llm_call:llm"
			}
			if strings.Join(steps, " ") != want {
				t.Fatalf("the report's steps: %v, want %s", steps, want)
			}
		})
	}
}
