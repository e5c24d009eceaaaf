// Package langchaingo connects agents built with github.com/tmc/langchaingo to troy: tools
// are checked by troy's guard before they run (and blocked in enforce mode), LLM calls and
// tool results are recorded in the session, and the session ends with the run, so troy
// scores and reports it.
//
//	a := langchaingo.New(conn, langchaingo.Options{Agent: "research-bot", Mode: schemas.ModeEnforce})
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

	"github.com/troy-audit/troy/ingest/agent"
	"github.com/troy-audit/troy/schemas"
)

// Options are the Python tool's adapter options.
type Options struct {
	Agent         string         // the agent's name
	AgentMetadata map[string]any // the agent's metadata, which policies read as agent.metadata
	Mode          string         // enforce (default), monitor or dry-run
	Session       string         // the session id; default a fresh one
	// MetadataFn gives each step's metadata from its action, input and type.
	MetadataFn func(action string, input map[string]any, stepType string) map[string]any
	// OnViolation is called with every decision that found violations.
	OnViolation func(schemas.Decision)
}

// Adapter is a langchaingo callbacks handler and a wrapper of tools.
type Adapter struct {
	callbacks.SimpleHandler
	g     *agent.Guard
	opts  Options
	mu    sync.Mutex
	llm   string // step id of the LLM call in flight
	depth int
}

// New starts a guarded session on a connection to troy.
func New(conn *agent.Conn, opts Options) *Adapter {
	if opts.Session == "" {
		opts.Session = opts.Agent + "-" + schemas.NewRun()
	}
	g := conn.Guard(agent.GuardOptions{Session: opts.Session, Agent: opts.Agent, AgentMetadata: opts.AgentMetadata, Mode: opts.Mode})
	return &Adapter{g: g, opts: opts}
}

// Session is the session's id: the trace troy reports.
func (a *Adapter) Session() string { return a.opts.Session }

func (a *Adapter) check(ctx context.Context, action string, input map[string]any, stepType string) (schemas.Decision, error) {
	var meta map[string]any
	if a.opts.MetadataFn != nil {
		meta = a.opts.MetadataFn(action, input, stepType)
	}
	d, err := a.g.Check(ctx, action, input, meta, stepType)
	if len(d.Violations) > 0 && a.opts.OnViolation != nil {
		a.opts.OnViolation(d)
	}
	return d, err
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
	d, err := t.a.check(ctx, t.Name(), map[string]any{"input": input}, schemas.StepToolCall)
	if err != nil {
		return "", err // *agent.BlockedError in enforce mode: the run stops, as in the Python tool
	}
	out, err := t.Tool.Call(ctx, input)
	result := map[string]any{"result": out}
	if err != nil {
		result = map[string]any{"error": err.Error()}
	}
	if rerr := t.a.g.RecordOutput(ctx, d.StepID, result); rerr != nil && err == nil {
		err = rerr
	}
	return out, err
}

// HandleChainStart counts nested chains, so the session ends with the outermost.
func (a *Adapter) HandleChainStart(context.Context, map[string]any) {
	a.mu.Lock()
	a.depth++
	a.mu.Unlock()
}

// HandleChainEnd ends the session when the outermost chain ends.
func (a *Adapter) HandleChainEnd(ctx context.Context, _ map[string]any) { a.chainDone(ctx) }

// HandleChainError ends the session too: a blocked run is audited like any other.
func (a *Adapter) HandleChainError(ctx context.Context, _ error) { a.chainDone(ctx) }

func (a *Adapter) chainDone(ctx context.Context) {
	a.mu.Lock()
	a.depth--
	done := a.depth == 0
	a.mu.Unlock()
	if done {
		_ = a.g.End(ctx)
	}
}

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
	d, err := a.check(ctx, "llm", map[string]any{"messages": msgs}, schemas.StepLLMCall)
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
	if id == "" || res == nil || len(res.Choices) == 0 {
		return
	}
	_ = a.g.RecordOutput(ctx, id, map[string]any{"text": res.Choices[0].Content})
}

var _ callbacks.Handler = (*Adapter)(nil)
