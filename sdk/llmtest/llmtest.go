// Package llmtest is a scripted OpenAI-compatible chat completions server, for tests and
// demonstrations that must not call a paid model: it answers with what a script says,
// records every request, and counts how many were in flight at once.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handler answers request n (0-based, in arrival order) whose body is body.
type Handler func(n int, body string, w http.ResponseWriter, r *http.Request)

// Server is a scripted model API; its base URL for clients is URL + "/v1".
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []string
	times    []time.Time
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

// NewServer starts a server answering with h. Close it when done.
func NewServer(h Handler) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(s.handler(h))
	return s
}

// Handler returns the http.Handler of a server answering with h, to serve on a listener
// of one's own.
func (s *Server) handler(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		in := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for m := s.maxIn.Load(); in > m && !s.maxIn.CompareAndSwap(m, in); m = s.maxIn.Load() {
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			// A client that gave up mid-request (a timeout under load) sent no request
			// worth recording; its retry is recorded instead.
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		n := len(s.bodies)
		s.bodies = append(s.bodies, string(raw))
		s.times = append(s.times, time.Now())
		s.mu.Unlock()
		h(n, string(raw), w, r)
	})
}

// Handle returns an http.Handler answering with h, recording into s; for serving on a
// listener of one's own (s.Server stays nil).
func Handle(h Handler) (*Server, http.Handler) {
	s := &Server{}
	return s, s.handler(h)
}

// Requests returns the bodies of the requests received so far, in arrival order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// Times returns when each request arrived.
func (s *Server) Times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

// MaxInFlight is the most requests that were being answered at once.
func (s *Server) MaxInFlight() int { return int(s.maxIn.Load()) }

// Answer writes a chat completion whose message is content, with a fixed token usage of
// 100 prompt and 20 completion tokens.
func Answer(w http.ResponseWriter, content string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "scripted", "object": "chat.completion", "created": 0, "model": "scripted",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": content}}},
		"usage":   map[string]any{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
	})
}

// CallTool writes a chat completion in which the model calls one tool, name, with
// arguments (JSON text), under the call id id; its usage is Answer's.
func CallTool(w http.ResponseWriter, id, name, arguments string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "scripted", "object": "chat.completion", "created": 0, "model": "scripted",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "tool_calls", "message": map[string]any{
			"role": "assistant", "content": nil,
			"tool_calls": []any{map[string]any{"id": id, "type": "function", "function": map[string]any{"name": name, "arguments": arguments}}},
		}}},
		"usage": map[string]any{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
	})
}

// Stream writes a chat completion as a stream of server-sent events, as the API answers a
// request with "stream": true: the content in one chunk, then the end.
func Stream(w http.ResponseWriter, content string) {
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(delta map[string]any, finish any) {
		raw, _ := json.Marshal(map[string]any{
			"id": "scripted", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
		_, _ = w.Write([]byte("data: " + string(raw) + "\n\n"))
	}
	chunk(map[string]any{"role": "assistant", "content": content}, nil)
	chunk(map[string]any{}, "stop")
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
}

// Reply answers with content as the request asks: streamed or whole.
func Reply(w http.ResponseWriter, body, content string) {
	if strings.Contains(body, `"stream":true`) {
		Stream(w, content)
		return
	}
	Answer(w, content)
}

// Fail writes an API error with status.
func Fail(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": message, "type": "error"}})
}

var (
	currentStep = regexp.MustCompile(`CURRENT step \d+ of \d+ \(step_id ([^)]+)\)\nType: ([^\n]*)\nDescription: ([^\n]*)`)
	summaryAsk  = "Summarise this agent execution"
)

// Explains answers like a cooperative model: a step prompt with an explanation that names
// the step and its description, a summary prompt with a summary.
func Explains(_ int, body string, w http.ResponseWriter, _ *http.Request) {
	var req struct {
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	_ = json.Unmarshal([]byte(body), &req)
	prompt := ""
	if len(req.Messages) > 0 {
		prompt = req.Messages[len(req.Messages)-1].Content
	}
	if strings.Contains(prompt, summaryAsk) {
		Answer(w, `{"overview": "The agent worked through its task step by step.", "key_actions": ["gathered information", "acted on it"], "concerns": []}`)
		return
	}
	id, typ, desc := "?", "?", "?"
	if m := currentStep.FindStringSubmatch(prompt); m != nil {
		id, typ, desc = m[1], m[2], m[3]
	}
	reply, _ := json.Marshal(map[string]any{
		"summary":       fmt.Sprintf("explains %s: a %s step, %s", id, typ, desc),
		"rationale":     "it followed from the steps before it",
		"alternatives":  []string{"ask the user first"},
		"risk_factors":  []string{},
		"data_accessed": []string{"the step's input"},
	})
	Answer(w, string(reply))
}
