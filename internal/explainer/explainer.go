// Package explainer asks a language model, through any OpenAI-compatible API, why an agent
// took each step of a trace, and for a summary of the whole trace. Sensitive values are
// redacted before anything leaves the machine; calls are bounded in concurrency, retried
// with backoff, limited by a per-run budget and cached by (endpoint, model, prompt).
package explainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/troy-audit/troy/schemas"
)

// DefaultModel is the model asked when none is configured.
const DefaultModel = "gpt-4o-mini"

// Config says which model to ask and how.
type Config struct {
	Model   string // default DefaultModel
	BaseURL string // an OpenAI-compatible API, such as http://127.0.0.1:8000/v1; default OpenAI's
	APIKey  string
	// Concurrency bounds the requests in flight at once, across every trace explained by
	// this Explainer. Default 5.
	Concurrency int
	// Timeout bounds one request. Default 60s.
	Timeout time.Duration
	// Retries after a failed attempt (429, 5xx, a network error or a timeout). Default 4;
	// negative for none.
	Retries int
	// Backoff is the first wait before a retry, doubled each time, with jitter, unless the
	// server says how long in Retry-After. Default 1s.
	Backoff time.Duration
	// MaxRequests and MaxTokens bound what this Explainer may spend in all; when either is
	// reached, further calls are skipped and the results say so. Zero means no bound.
	MaxRequests int
	MaxTokens   int
	// ContextChars bounds the size of a prompt; longer step data is cut with a visible
	// marker and far neighbours are left out. Default 16,000.
	ContextChars int
	// NoRedact sends step data as it is. By default sensitive values are replaced first.
	NoRedact bool
	// Cache, when set, keeps replies by (endpoint, model, prompt): asking again costs nothing.
	Cache  Cache
	Logger *slog.Logger
	// HTTPClient makes the requests; nil uses a default client.
	HTTPClient *http.Client
}

// Cache keeps model replies. Get returns nil when the key is absent.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// Explainer explains traces. It is safe for concurrent use; its concurrency limit and its
// budget are shared by everything it explains.
type Explainer struct {
	cfg      Config
	client   *openai.Client
	slots    chan struct{}
	requests atomic.Int64
	tokens   atomic.Int64
	noJSON   atomic.Bool // the server refused the JSON response format
	refused  atomic.Pointer[error]
	counts   struct{ ok, failed, cached, skipped, prompt, completion atomic.Int64 }
}

// Counts are what an Explainer has asked of its model since it was made: calls by
// outcome (answered, failed after retries, answered from the cache, skipped by the
// budget) and the tokens the answered ones spent.
type Counts struct {
	OK, Failed, Cached, Skipped    int64
	PromptTokens, CompletionTokens int64
}

// Counts reads the explainer's counts, for metrics.
func (e *Explainer) Counts() Counts {
	c := &e.counts
	return Counts{OK: c.ok.Load(), Failed: c.failed.Load(), Cached: c.cached.Load(), Skipped: c.skipped.Load(),
		PromptTokens: c.prompt.Load(), CompletionTokens: c.completion.Load()}
}

// New returns an explainer for the configured model.
func New(cfg Config) *Explainer {
	if cfg.Model == "" {
		cfg.Model = DefaultModel
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 5
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.ContextChars <= 0 {
		cfg.ContextChars = 16_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	oc := openai.DefaultConfig(cfg.APIKey)
	if cfg.BaseURL != "" {
		oc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	}
	oc.HTTPClient = retryAfterDoer{hc}
	return &Explainer{cfg: cfg, client: openai.NewClientWithConfig(oc), slots: make(chan struct{}, cfg.Concurrency)}
}

// Model is the model asked.
func (e *Explainer) Model() string { return e.cfg.Model }

// Result is what explaining one trace gave.
type Result struct {
	Explanations []schemas.StepExplanation
	Summary      *schemas.TraceSummary
	Usage        schemas.LLMUsage
	// Note says what is missing and why (budget spent, calls failed); empty when complete.
	Note string
}

// usage counts one trace's calls.
type usage struct {
	calls, cached, failed, skipped, prompt, completion atomic.Int64
	mu                                                 sync.Mutex
	lastErr                                            error
}

// Explain explains every step of the trace and summarises it. It returns an error only
// when ctx ends; calls that fail are marked in their explanation and counted.
func (e *Explainer) Explain(ctx context.Context, t *schemas.Trace) (*Result, error) {
	rt := t
	var red *Redactor
	if !e.cfg.NoRedact {
		var err error
		if red, err = NewRedactor(); err != nil {
			return refuseUnredacted(t, err), nil
		}
		rt = redactTrace(t, red)
	}
	u := &usage{}
	res := &Result{Explanations: make([]schemas.StepExplanation, len(rt.Steps))}
	var wg sync.WaitGroup
	for i := range rt.Steps {
		// The model sees redacted ids; answers are mapped back by position, to the real id.
		id := t.Steps[i].StepID
		wg.Go(func() {
			reply, err := e.complete(ctx, stepPrompt(rt, i, e.cfg.ContextChars), u)
			if err != nil {
				res.Explanations[i] = schemas.StepExplanation{StepID: id, Alternatives: []string{}, RiskFactors: []string{}, DataAccessed: []string{}, Error: err.Error()}
				return
			}
			res.Explanations[i] = parseStep(id, reply)
		})
	}
	wg.Go(func() {
		reply, err := e.complete(ctx, summaryPrompt(rt, e.cfg.ContextChars), u)
		if err != nil {
			res.Summary = &schemas.TraceSummary{KeyActions: []string{}, Concerns: []string{}, Error: err.Error()}
			return
		}
		res.Summary = parseSummary(reply)
	})
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Usage = schemas.LLMUsage{
		Model: e.cfg.Model, Calls: int(u.calls.Load()), Cached: int(u.cached.Load()), Failed: int(u.failed.Load()), Skipped: int(u.skipped.Load()),
		PromptTokens: int(u.prompt.Load()), CompletionTokens: int(u.completion.Load()),
	}
	if red != nil && len(red.Counts()) > 0 {
		res.Usage.Redacted = red.Counts()
	}
	total := len(rt.Steps) + 1
	var notes []string
	if n := res.Usage.Skipped; n > 0 {
		notes = append(notes, fmt.Sprintf("the run's budget was spent: %d of %d calls not made", n, total))
	}
	if n := res.Usage.Failed; n > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d calls failed (%v)", n, total, u.lastErr))
	}
	res.Note = strings.Join(notes, "; ")
	return res, nil
}

// refuseUnredacted is the result when step data cannot be redacted: no call is made, so
// nothing leaves unredacted, and every step says why.
func refuseUnredacted(t *schemas.Trace, err error) *Result {
	msg := fmt.Sprintf("not asked: the redaction rules did not load: %v", err)
	res := &Result{Explanations: make([]schemas.StepExplanation, len(t.Steps)), Note: msg}
	for i, s := range t.Steps {
		res.Explanations[i] = schemas.StepExplanation{StepID: s.StepID, Alternatives: []string{}, RiskFactors: []string{}, DataAccessed: []string{}, Error: msg}
	}
	res.Summary = &schemas.TraceSummary{KeyActions: []string{}, Concerns: []string{}, Error: msg}
	return res
}

// errBudget marks a call not made because the run's budget is spent.
var errBudget = errors.New("not asked: the run's LLM budget is spent")

type cached struct {
	Reply            string `json:"reply"`
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"`
}

// cacheFormat versions the cache key. Keys of older formats simply miss, so replies
// cached before a change of the key (or of how replies are asked for) are never reused.
const cacheFormat = "troy-explain-cache-v2"

// CacheKey identifies a reply by everything that changes it: the API endpoint, the model,
// the system prompt and the prompt. The request sets no sampling parameters (temperature,
// token limits); any that it comes to set belong in the key too.
func CacheKey(endpoint, model, system, prompt string) string {
	h := sha256.New()
	for _, part := range []string{cacheFormat, endpoint, model, system, prompt} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// endpoint is the API base URL requests go to, as the cache key names it.
func (e *Explainer) endpoint() string {
	if e.cfg.BaseURL == "" {
		return openai.DefaultConfig("").BaseURL
	}
	return strings.TrimRight(e.cfg.BaseURL, "/")
}

// complete asks the model one question of the explainer, through the cache, the budget,
// the concurrency limit and retries.
func (e *Explainer) complete(ctx context.Context, prompt string, u *usage) (string, error) {
	return e.completeWith(ctx, systemPrompt, prompt, u)
}

// completeWith asks the model one question under a system prompt, as complete does.
func (e *Explainer) completeWith(ctx context.Context, system, prompt string, u *usage) (string, error) {
	key := CacheKey(e.endpoint(), e.cfg.Model, system, prompt)
	if e.cfg.Cache != nil {
		if raw, err := e.cfg.Cache.Get(ctx, key); err != nil {
			e.cfg.Logger.Warn("explanation cache unavailable", "err", err)
		} else if raw != nil {
			var c cached
			if json.Unmarshal(raw, &c) == nil {
				u.cached.Add(1)
				e.counts.cached.Add(1)
				return c.Reply, nil
			}
		}
	}
	fail := func(err error) (string, error) {
		u.failed.Add(1)
		e.counts.failed.Add(1)
		u.mu.Lock()
		u.lastErr = err
		u.mu.Unlock()
		return "", err
	}
	if (e.cfg.MaxRequests > 0 && e.requests.Add(1) > int64(e.cfg.MaxRequests)) ||
		(e.cfg.MaxTokens > 0 && e.tokens.Load() >= int64(e.cfg.MaxTokens)) {
		u.skipped.Add(1)
		e.counts.skipped.Add(1)
		return "", errBudget
	}
	resp, err := e.ask(ctx, system, prompt)
	if err != nil {
		return fail(err)
	}
	u.calls.Add(1)
	e.counts.ok.Add(1)
	e.counts.prompt.Add(int64(resp.Usage.PromptTokens))
	e.counts.completion.Add(int64(resp.Usage.CompletionTokens))
	reply := ""
	if len(resp.Choices) > 0 {
		reply = resp.Choices[0].Message.Content
	}
	u.prompt.Add(int64(resp.Usage.PromptTokens))
	u.completion.Add(int64(resp.Usage.CompletionTokens))
	e.tokens.Add(int64(resp.Usage.TotalTokens))
	if e.cfg.Cache != nil {
		raw, _ := json.Marshal(cached{Reply: reply, PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens})
		if err := e.cfg.Cache.Put(ctx, key, raw); err != nil {
			e.cfg.Logger.Warn("explanation not cached", "err", err)
		}
	}
	return reply, nil
}

// ask sends one chat completion, retrying what a retry can fix.
func (e *Explainer) ask(ctx context.Context, system, prompt string) (openai.ChatCompletionResponse, error) {
	req := openai.ChatCompletionRequest{
		Model: e.cfg.Model,
		Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: system},
			{Role: openai.ChatMessageRoleUser, Content: prompt},
		},
	}
	for attempt := 0; ; attempt++ {
		resp, jsonMode, retryAfter, err := e.once(ctx, req)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return resp, ctx.Err()
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return resp, err
		}
		status := statusOf(err)
		switch {
		case jsonMode && refusesJSONMode(err):
			// The server does not take the JSON response format: ask in plain text, now and
			// (once has noted it) from now on; the reply is parsed the same way.
			e.cfg.Logger.Info("the model API refused the JSON response format; asking without it", "err", err)
			attempt--
			continue
		case !retryable(status, err) || attempt >= e.cfg.Retries:
			if attempt > 0 {
				return resp, fmt.Errorf("no answer after %d attempts: %w", attempt+1, err)
			}
			return resp, err
		}
		wait := retryAfter
		if wait <= 0 {
			wait = e.cfg.Backoff << attempt
			wait = wait/2 + rand.N(wait/2+1) // jitter, so that callers spread out
		}
		wait = min(wait, time.Minute)
		e.cfg.Logger.Debug("model API call failed; retrying", "attempt", attempt+1, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return resp, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// once makes one attempt within a slot of the concurrency limit and the request timeout.
// What earlier attempts learnt (the credentials are refused, the JSON response format is
// not taken) is read once the slot is held, so that waiting callers do not repeat it.
func (e *Explainer) once(ctx context.Context, req openai.ChatCompletionRequest) (resp openai.ChatCompletionResponse, jsonMode bool, retryAfter time.Duration, err error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return resp, false, 0, ctx.Err()
	}
	defer func() { <-e.slots }()
	if p := e.refused.Load(); p != nil {
		return resp, false, 0, *p
	}
	if jsonMode = !e.noJSON.Load(); jsonMode {
		req.ResponseFormat = &openai.ChatCompletionResponseFormat{Type: openai.ChatCompletionResponseFormatTypeJSONObject}
	}
	reqCtx, cancel := context.WithTimeout(context.WithValue(ctx, retryAfterKey{}, &retryAfter), e.cfg.Timeout)
	defer cancel()
	resp, err = e.client.CreateChatCompletion(reqCtx, req)
	if err != nil && errors.Is(reqCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("no reply within %s: %w", e.cfg.Timeout, err)
	}
	// Both are noted while the slot is held, so that no waiting caller asks again.
	if jsonMode && refusesJSONMode(err) {
		e.noJSON.Store(true)
	}
	if status := statusOf(err); status == 401 || status == 403 {
		err = &refusedError{err}
		e.refused.CompareAndSwap(nil, &err)
	}
	return resp, jsonMode, retryAfter, err
}

// refusesJSONMode reports whether err is a server's refusal of the JSON response format.
func refusesJSONMode(err error) bool {
	status := statusOf(err)
	return err != nil && (status == 400 || status == 422) && mentionsFormat(err)
}

// refusedError is a refusal of the credentials: no later call can succeed.
type refusedError struct{ err error }

func (r *refusedError) Error() string {
	return "the model API refused the credentials: " + r.err.Error()
}
func (r *refusedError) Unwrap() error { return r.err }

func statusOf(err error) int {
	var api *openai.APIError
	if errors.As(err, &api) {
		return api.HTTPStatusCode
	}
	var re *openai.RequestError
	if errors.As(err, &re) {
		return re.HTTPStatusCode
	}
	return 0
}

// retryable says whether another attempt may succeed: rate limits, server errors, and
// failures without a status (network errors, timeouts).
func retryable(status int, err error) bool {
	switch {
	case status == 0:
		return !errors.Is(err, context.Canceled)
	case status == 408 || status == 409 || status == 429 || status >= 500:
		return true
	}
	return false
}

func mentionsFormat(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "response_format") || strings.Contains(s, "json")
}

type retryAfterKey struct{}

// retryAfterDoer hands the Retry-After header of a response to the attempt that asked,
// since the client's errors do not carry headers.
type retryAfterDoer struct{ c *http.Client }

func (d retryAfterDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(req)
	if resp != nil {
		if p, ok := req.Context().Value(retryAfterKey{}).(*time.Duration); ok {
			*p = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return resp, err
}

// parseRetryAfter reads seconds or an HTTP date; zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
