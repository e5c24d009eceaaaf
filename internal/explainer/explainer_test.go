package explainer_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/llmtest"
)

func newLLM(t *testing.T, h llmtest.Handler) *llmtest.Server {
	t.Helper()
	s := llmtest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

var (
	answer   = llmtest.Answer
	fail     = llmtest.Fail
	explains = llmtest.Explains
)

func trace(steps int) *schemas.Trace {
	t := &schemas.Trace{TraceID: "t1", AgentName: "bot", Metadata: map[string]any{"env": "test"}}
	for i := range steps {
		t.Steps = append(t.Steps, &schemas.Step{StepID: fmt.Sprint("s", i+1), Type: schemas.StepToolCall, Description: "search",
			Input: map[string]any{"query": fmt.Sprint("q", i)}, Output: map[string]any{"hits": i}, Metadata: map[string]any{}})
	}
	return t
}

func config(s *llmtest.Server) explainer.Config {
	return explainer.Config{Model: "test-model", BaseURL: s.URL + "/v1", APIKey: "test", Backoff: time.Millisecond, Timeout: 5 * time.Second}
}

func explain(t *testing.T, e *explainer.Explainer, tr *schemas.Trace) *explainer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.Explain(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestExplainsEveryStepAndSummarises(t *testing.T) {
	s := newLLM(t, explains)
	r := explain(t, explainer.New(config(s)), trace(4))
	if len(r.Explanations) != 4 || len(s.Requests()) != 5 {
		t.Fatalf("%d explanations from %d requests", len(r.Explanations), len(s.Requests()))
	}
	for i, e := range r.Explanations {
		id := fmt.Sprint("s", i+1)
		if e.StepID != id || !strings.HasPrefix(e.Summary, "explains "+id+": a tool_call step") || e.Rationale == "" || len(e.Alternatives) != 1 || e.Error != "" || e.RawResponse == "" {
			t.Fatalf("explanation %d: %+v", i, e)
		}
	}
	if r.Summary == nil || r.Summary.Overview == "" || len(r.Summary.KeyActions) != 2 || r.Note != "" {
		t.Fatalf("summary %+v note %q", r.Summary, r.Note)
	}
	u := r.Usage
	if u.Model != "test-model" || u.Calls != 5 || u.Cached != 0 || u.PromptTokens != 500 || u.CompletionTokens != 100 {
		t.Fatalf("usage %+v", u)
	}
	// The prompt carries the step, its neighbours and asks for JSON; JSON mode is asked for.
	var body string
	for _, b := range s.Requests() {
		if strings.Contains(b, "step_id s2") {
			body = b
		}
	}
	for _, want := range []string{`"response_format":{"type":"json_object"}`, "CURRENT step", "Respond with JSON only", "Steps before it", "Steps after it", `\"query\":\"q`} {
		if !strings.Contains(body, want) {
			t.Errorf("request lacks %q:\n%s", want, body)
		}
	}
}

// Replies as models write them: fenced, after a preamble, lists of objects where strings
// were asked, strings where lists were, missing keys, and no JSON at all.
func TestParsesRepliesAsModelsWriteThem(t *testing.T) {
	tests := []struct {
		name, reply string
		check       func(schemas.StepExplanation) bool
	}{
		{"plain", `{"summary": "s", "rationale": "r", "alternatives": ["a"], "risk_factors": ["x"], "data_accessed": ["d"]}`,
			func(e schemas.StepExplanation) bool {
				return e.Summary == "s" && e.RiskFactors[0] == "x" && e.Error == ""
			}},
		{"fenced", "```json\n{\"summary\": \"fenced\", \"rationale\": \"r\"}\n```",
			func(e schemas.StepExplanation) bool { return e.Summary == "fenced" && len(e.Alternatives) == 0 }},
		{"preamble", "Sure! Here is the analysis you asked for:\n{\"summary\": \"after words\", \"rationale\": \"r\"}\nHope this helps.",
			func(e schemas.StepExplanation) bool { return e.Summary == "after words" }},
		{"mixed lists", `{"summary": "m", "alternatives": [{"action": "ask", "why": "safer"}, "wait", 3], "risk_factors": "- leaks data\n- no approval", "data_accessed": {"table": "users"}}`,
			func(e schemas.StepExplanation) bool {
				return strings.Join(e.Alternatives, "|") == "action: ask, why: safer|wait|3" &&
					strings.Join(e.RiskFactors, "|") == "leaks data|no approval" && strings.Join(e.DataAccessed, "|") == "table: users"
			}},
		{"other spellings and missing keys", `{"Summary": "cased", "riskFactors": ["camel"]}`,
			func(e schemas.StepExplanation) bool {
				return e.Summary == "cased" && e.RiskFactors[0] == "camel" && e.Rationale == "" && e.DataAccessed != nil
			}},
		{"no JSON", "I cannot help with that.",
			func(e schemas.StepExplanation) bool {
				return e.Summary == "" && e.RawResponse == "I cannot help with that." && strings.Contains(e.Error, "no JSON")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newLLM(t, func(_ int, body string, w http.ResponseWriter, _ *http.Request) {
				if strings.Contains(body, "Summarise") {
					answer(w, "not JSON either")
					return
				}
				answer(w, tt.reply)
			})
			r := explain(t, explainer.New(config(s)), trace(1))
			if e := r.Explanations[0]; !tt.check(e) {
				t.Fatalf("parsed %+v", e)
			}
			if r.Summary.Error == "" || r.Summary.RawResponse != "not JSON either" {
				t.Fatalf("summary %+v", r.Summary)
			}
		})
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	s := newLLM(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			fail(w, http.StatusTooManyRequests, "rate limited")
			return
		}
		explains(n, body, w, r)
	})
	r := explain(t, explainer.New(config(s)), trace(1))
	if r.Usage.Calls != 2 || r.Usage.Failed != 0 || len(s.Requests()) != 3 {
		t.Fatalf("usage %+v after %d requests", r.Usage, len(s.Requests()))
	}
	// The retry is the later request with the same body as the refused one.
	bodies, times := s.Requests(), s.Times()
	for i := 1; i < len(bodies); i++ {
		if bodies[i] == bodies[0] {
			if wait := times[i].Sub(times[0]); wait < time.Second {
				t.Fatalf("retried after %s, before the server's Retry-After of 1s", wait)
			}
			return
		}
	}
	t.Fatal("the rate-limited request was not retried")
}

func TestRetriesServerErrors(t *testing.T) {
	s := newLLM(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		if n < 2 {
			fail(w, http.StatusInternalServerError, "boom")
			return
		}
		explains(n, body, w, r)
	})
	cfg := config(s)
	cfg.Concurrency = 1
	r := explain(t, explainer.New(cfg), trace(1))
	if r.Explanations[0].Error != "" || r.Usage.Failed != 0 || len(s.Requests()) != 4 {
		t.Fatalf("explanation %+v, %d requests", r.Explanations[0], len(s.Requests()))
	}
}

// A server that never answers costs each call its timeout and retries, then the audit
// goes on with the calls marked.
func TestHungServerTimesOut(t *testing.T) {
	s := newLLM(t, func(_ int, _ string, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	cfg := config(s)
	cfg.Timeout, cfg.Retries = 100*time.Millisecond, 1
	r := explain(t, explainer.New(cfg), trace(2))
	for _, e := range r.Explanations {
		if !strings.Contains(e.Error, "no reply within 100ms") || !strings.Contains(e.Error, "after 2 attempts") {
			t.Fatalf("explanation %+v", e)
		}
	}
	if r.Usage.Failed != 3 || r.Usage.Calls != 0 || !strings.Contains(r.Note, "3 of 3 calls failed") {
		t.Fatalf("usage %+v note %q", r.Usage, r.Note)
	}
}

func TestConcurrencyLimitIsNeverExceeded(t *testing.T) {
	s := newLLM(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // the model takes a while; requests pile up
		explains(n, body, w, r)
	})
	cfg := config(s)
	cfg.Concurrency = 3
	e := explainer.New(cfg)
	var wg sync.WaitGroup
	for range 3 { // traces of a batch share the limit
		wg.Go(func() { explain(t, e, trace(10)) })
	}
	wg.Wait()
	if got := s.MaxInFlight(); got != 3 {
		t.Fatalf("at most %d requests in flight, want exactly the limit of 3", got)
	}
}

type memCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *memCache) Get(_ context.Context, k string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k], nil
}

func (c *memCache) Put(_ context.Context, k string, v []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = v
	return nil
}

func TestCachedTraceCostsNoRequests(t *testing.T) {
	s := newLLM(t, explains)
	cfg := config(s)
	cfg.Cache = &memCache{m: map[string][]byte{}}
	first := explain(t, explainer.New(cfg), trace(3))
	before := len(s.Requests())
	second := explain(t, explainer.New(cfg), trace(3))
	if len(s.Requests()) != before {
		t.Fatalf("the second audit made %d requests", len(s.Requests())-before)
	}
	if second.Usage.Cached != 4 || second.Usage.Calls != 0 || second.Explanations[2].Summary != first.Explanations[2].Summary {
		t.Fatalf("second: %+v", second.Usage)
	}
}

// Nothing sensitive reaches the model: the server checks every prompt it receives.
func TestSensitiveValuesNeverLeave(t *testing.T) {
	secrets := []string{"jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111", "4111111111111111", "sk-proj-abcdefghijklmnopqrstuvwx1234"}
	var leaked atomic.Value
	s := newLLM(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		for _, sec := range secrets {
			if strings.Contains(body, sec) {
				leaked.Store(sec)
			}
		}
		explains(n, body, w, r)
	})
	tr := trace(3)
	tr.Steps[0].Input = map[string]any{"to": "jane.doe@example.com", "body": "SSN 123-45-6789, card 4111 1111 1111 1111"}
	tr.Steps[1].Description = "charge 4111111111111111 for jane.doe@example.com"
	tr.Steps[2].Metadata = map[string]any{"note": "key sk-proj-abcdefghijklmnopqrstuvwx1234", "api_key": "plain-looking"}
	r := explain(t, explainer.New(config(s)), tr)
	if v := leaked.Load(); v != nil {
		t.Fatalf("%q reached the model", v)
	}
	all := strings.Join(s.Requests(), "\n")
	for _, p := range []string{"[EMAIL_1]", "[SSN_1]", "[CARD_1]", "[API_KEY_1]", "[PASSWORD_1]"} {
		if !strings.Contains(all, p) {
			t.Errorf("no %s in the prompts", p)
		}
	}
	if strings.Contains(all, "plain-looking") {
		t.Error("the value of an api_key field was sent")
	}
	if r.Usage.Redacted["EMAIL"] != 1 || r.Usage.Redacted["CARD"] != 2 {
		t.Fatalf("redacted %v", r.Usage.Redacted)
	}
	// Turned off, the data goes as it is.
	cfg := config(s)
	cfg.NoRedact = true
	explain(t, explainer.New(cfg), tr)
	if leaked.Load() == nil {
		t.Fatal("with redaction off the data should have been sent as it is")
	}
}

func TestFallsBackWhenJSONModeIsRefused(t *testing.T) {
	s := newLLM(t, func(n int, body string, w http.ResponseWriter, r *http.Request) {
		if strings.Contains(body, "response_format") {
			fail(w, http.StatusBadRequest, "response_format json_object is not supported by this model")
			return
		}
		explains(n, body, w, r)
	})
	cfg := config(s)
	cfg.Concurrency = 1
	r := explain(t, explainer.New(cfg), trace(3))
	if r.Usage.Calls != 4 || r.Usage.Failed != 0 || len(s.Requests()) != 5 {
		t.Fatalf("usage %+v after %d requests: one refusal, then plain requests", r.Usage, len(s.Requests()))
	}
}

func TestBudgetStopsFurtherCalls(t *testing.T) {
	s := newLLM(t, explains)
	cfg := config(s)
	cfg.MaxRequests = 3
	r := explain(t, explainer.New(cfg), trace(5))
	if len(s.Requests()) != 3 || r.Usage.Calls != 3 || r.Usage.Skipped != 3 {
		t.Fatalf("%d requests, usage %+v", len(s.Requests()), r.Usage)
	}
	if !strings.Contains(r.Note, "budget was spent: 3 of 6 calls not made") {
		t.Fatalf("note %q", r.Note)
	}
}

func TestRefusedKeyStopsAsking(t *testing.T) {
	s := newLLM(t, func(_ int, _ string, w http.ResponseWriter, _ *http.Request) {
		fail(w, http.StatusUnauthorized, "invalid api key")
	})
	cfg := config(s)
	cfg.Concurrency = 1
	r := explain(t, explainer.New(cfg), trace(20))
	if len(s.Requests()) != 1 || r.Usage.Failed != 21 || !strings.Contains(r.Note, "refused the credentials") {
		t.Fatalf("%d requests, usage %+v, note %q", len(s.Requests()), r.Usage, r.Note)
	}
}

// Each part of the cache key changes it: a reply is reused only for the same endpoint,
// model, system prompt and prompt.
func TestCacheKeyParts(t *testing.T) {
	base := explainer.CacheKey("http://a/v1", "m", "sys", "p")
	for name, key := range map[string]string{
		"endpoint": explainer.CacheKey("http://b/v1", "m", "sys", "p"),
		"model":    explainer.CacheKey("http://a/v1", "m2", "sys", "p"),
		"system":   explainer.CacheKey("http://a/v1", "m", "sys2", "p"),
		"prompt":   explainer.CacheKey("http://a/v1", "m", "sys", "p2"),
		"boundary": explainer.CacheKey("http://a/v1", "m", "sysp", ""),
	} {
		if key == base {
			t.Errorf("a different %s gives the same key", name)
		}
	}
}
