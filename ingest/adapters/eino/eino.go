// Package eino connects agents built with github.com/cloudwego/eino to troy: tools are
// checked by troy's guard before they run (and blocked in enforce mode), chat model calls
// and tool results are recorded in the session, and the session ends with the outermost
// graph, so troy scores and reports it.
//
//	a := eino.New(conn, adapter.Options{Agent: "research-bot", Mode: schemas.ModeEnforce})
//	ag, _ := react.NewAgent(ctx, &react.AgentConfig{ToolCallingModel: chatModel,
//		ToolsConfig: compose.ToolsNodeConfig{Tools: a.Tools(myTools)}})
//	msg, err := ag.Generate(ctx, msgs, agent.WithComposeOptions(compose.WithCallbacks(a.Handler())))
package eino

import (
	"context"

	"github.com/cloudwego/eino/callbacks"
	"github.com/cloudwego/eino/components"
	"github.com/cloudwego/eino/components/model"
	"github.com/cloudwego/eino/components/tool"
	"github.com/cloudwego/eino/compose"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/adapter"
	"github.com/troy-audit/troy/sdk/agent"
)

// Adapter guards an eino agent's tools and records its run.
type Adapter struct{ *adapter.Session }

// New starts a guarded session on a connection to troy.
func New(conn *agent.Conn, opts adapter.Options) *Adapter {
	return &Adapter{Session: adapter.New(conn, opts)}
}

// With starts a guarded session on a guard the caller made, such as the local guard, which
// needs no deployment.
func With(g agent.Checker, opts adapter.Options) *Adapter {
	return &Adapter{Session: adapter.With(g, opts)}
}

// Tools wraps invokable tools so that each call is checked first, runs only if allowed,
// and has its result recorded. Other tools are returned as they are.
func (a *Adapter) Tools(ts []tool.BaseTool) []tool.BaseTool {
	out := make([]tool.BaseTool, len(ts))
	for i, t := range ts {
		if it, ok := t.(tool.InvokableTool); ok {
			out[i] = &guardedTool{InvokableTool: it, a: a}
		} else {
			out[i] = t
		}
	}
	return out
}

type guardedTool struct {
	tool.InvokableTool
	a *Adapter
}

func (t *guardedTool) InvokableRun(ctx context.Context, args string, opts ...tool.Option) (string, error) {
	name := "tool"
	if info, err := t.Info(ctx); err == nil && info != nil {
		name = info.Name
	}
	return t.a.Run(ctx, name, map[string]any{"arguments": args}, func() (string, error) { return t.InvokableTool.InvokableRun(ctx, args, opts...) })
}

// stepKey carries the step id of a model call from its start to its end.
type stepKey struct{}

// Handler records chat model calls and ends the session with the outermost graph.
func (a *Adapter) Handler() callbacks.Handler {
	return callbacks.NewHandlerBuilder().
		OnStartFn(func(ctx context.Context, info *callbacks.RunInfo, input callbacks.CallbackInput) context.Context {
			switch info.Component {
			case compose.ComponentOfGraph:
				a.Enter()
			case components.ComponentOfChatModel:
				var msgs []any
				if in := model.ConvCallbackInput(input); in != nil {
					for _, m := range in.Messages {
						msgs = append(msgs, map[string]any{"role": string(m.Role), "text": m.Content})
					}
				}
				if d, err := a.Check(ctx, "llm", map[string]any{"messages": msgs}, schemas.StepLLMCall); err == nil {
					return context.WithValue(ctx, stepKey{}, d.StepID)
				}
			}
			return ctx
		}).
		OnEndFn(func(ctx context.Context, info *callbacks.RunInfo, output callbacks.CallbackOutput) context.Context {
			switch info.Component {
			case compose.ComponentOfGraph:
				a.Leave(ctx)
			case components.ComponentOfChatModel:
				id, _ := ctx.Value(stepKey{}).(string)
				if out := model.ConvCallbackOutput(output); out != nil && out.Message != nil {
					rec := map[string]any{"text": out.Message.Content}
					for _, tc := range out.Message.ToolCalls {
						rec["tool_calls"] = append(asList(rec["tool_calls"]), map[string]any{"name": tc.Function.Name, "arguments": tc.Function.Arguments})
					}
					_ = a.Output(ctx, id, rec)
				}
			}
			return ctx
		}).
		OnErrorFn(func(ctx context.Context, info *callbacks.RunInfo, _ error) context.Context {
			if info.Component == compose.ComponentOfGraph {
				a.Leave(ctx) // a blocked run is audited like any other
			}
			return ctx
		}).
		Build()
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
