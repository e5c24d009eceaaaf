// Package langchaingo connects agents built with github.com/tmc/langchaingo to troy: tools
// are checked by troy's guard before they run (and blocked in enforce mode), LLM calls and
// tool results are recorded in the session, and the session ends with the run, so troy
// scores and reports it.
//
//	a := langchaingo.New(conn, adapter.Options{Agent: "research-bot", Mode: schemas.ModeEnforce})
//	llm, _ := openai.New(openai.WithCallback(a))              // LLM calls recorded
//	executor := agents.NewExecutor(agents.NewOneShotAgent(llm, a.Tools(myTools),
//		agents.WithCallbacksHandler(a)), agents.WithCallbacksHandler(a))
//	answer, err := chains.Run(ctx, executor, question) // err wraps *agent.BlockedError when blocked
package langchaingo

import (
	"context"
	"sync"

	"github.com/tmc/langchaingo/callbacks"
	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/tools"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/adapter"
	"github.com/troy-audit/troy/sdk/agent"
)

// Adapter is a langchaingo callbacks handler and a wrapper of tools.
type Adapter struct {
	callbacks.SimpleHandler
	*adapter.Session
	mu  sync.Mutex
	llm string // step id of the LLM call in flight
}

// New starts a guarded session on a connection to troy.
func New(conn *agent.Conn, opts adapter.Options) *Adapter {
	return &Adapter{Session: adapter.New(conn, opts)}
}

// With starts a guarded session on a guard the caller made, such as the local guard, which
// needs no deployment.
func With(g agent.Checker, opts adapter.Options) *Adapter {
	return &Adapter{Session: adapter.With(g, opts)}
}

// Tools wraps tools so that each call is checked first, runs only if allowed, and has its
// result recorded.
func (a *Adapter) Tools(ts []tools.Tool) []tools.Tool {
	out := make([]tools.Tool, len(ts))
	for i, t := range ts {
		out[i] = &guardedTool{Tool: t, a: a}
	}
	return out
}

type guardedTool struct {
	tools.Tool
	a *Adapter
}

func (t *guardedTool) Call(ctx context.Context, input string) (string, error) {
	return t.a.Run(ctx, t.Name(), map[string]any{"input": input}, func() (string, error) { return t.Tool.Call(ctx, input) })
}

// HandleChainStart counts nested chains, so the session ends with the outermost.
func (a *Adapter) HandleChainStart(context.Context, map[string]any) { a.Enter() }

// HandleChainEnd ends the session when the outermost chain ends.
func (a *Adapter) HandleChainEnd(ctx context.Context, _ map[string]any) { a.Leave(ctx) }

// HandleChainError ends the session too: a blocked run is audited like any other.
func (a *Adapter) HandleChainError(ctx context.Context, _ error) { a.Leave(ctx) }

// HandleLLMGenerateContentStart records an LLM call with its messages.
func (a *Adapter) HandleLLMGenerateContentStart(ctx context.Context, ms []llms.MessageContent) {
	var msgs []any
	for _, m := range ms {
		for _, p := range m.Parts {
			if t, ok := p.(llms.TextContent); ok {
				msgs = append(msgs, map[string]any{"role": string(m.Role), "text": t.Text})
			}
		}
	}
	d, err := a.Check(ctx, "llm", map[string]any{"messages": msgs}, schemas.StepLLMCall)
	if err == nil {
		a.mu.Lock()
		a.llm = d.StepID
		a.mu.Unlock()
	}
}

// HandleLLMGenerateContentEnd records the LLM's answer.
func (a *Adapter) HandleLLMGenerateContentEnd(ctx context.Context, res *llms.ContentResponse) {
	a.mu.Lock()
	id := a.llm
	a.llm = ""
	a.mu.Unlock()
	if res == nil || len(res.Choices) == 0 {
		return
	}
	_ = a.Output(ctx, id, map[string]any{"text": res.Choices[0].Content})
}

var _ callbacks.Handler = (*Adapter)(nil)
