package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
)

// OTLPOptions shape an OTLP load.
type OTLPOptions struct {
	URL      string // the receiver's /v1/traces; required
	Token    string // its bearer token
	Spans    int    // spans in all; zero means 100,000
	PerTrace int    // spans per trace, the agent's root span included; zero means 20
	PerPost  int    // traces per export request; zero means 32
	Senders  int    // export requests in flight; zero means 4
	Progress func(done int64)
	Client   *http.Client
}

// OTLPResult is what an OTLP load measured.
type OTLPResult struct {
	Spans       int     `json:"spans"`
	Steps       int     `json:"steps"`
	Traces      int     `json:"traces"`
	Seconds     float64 `json:"seconds"`
	SendSeconds float64 `json:"send_seconds"`
	SpansPerS   float64 `json:"spans_per_second"`
	StepsPerS   float64 `json:"steps_per_second"`
	SentPerS    float64 `json:"sent_spans_per_second"`
	Retries     int64   `json:"retries"`
	Latency     Latency `json:"trace_latency"` // from a trace's export answered to its score
}

// OTLP exports generated agent runs (an invoke_agent span with chat and execute_tool
// spans under it, about 1 KB of attributes a span) over OTLP/HTTP protobuf as fast as the
// receiver takes them, retrying what it refuses as busy, and waits until every trace is
// scored: spans per second, exported to scored.
func OTLP(ctx context.Context, b *bus.Bus, opts OTLPOptions) (OTLPResult, error) {
	if opts.Spans <= 0 {
		opts.Spans = 100_000
	}
	if opts.PerTrace < 2 {
		opts.PerTrace = 20
	}
	if opts.PerPost <= 0 {
		opts.PerPost = 32
	}
	if opts.Senders <= 0 {
		opts.Senders = 4
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: time.Minute}
	}
	traces := max(1, opts.Spans/opts.PerTrace)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	prefix := hex.EncodeToString(nonce[:])
	w := watchScores(ctx, b, traces, opts.PerTrace, opts.Progress, func(ev event.Scored) (int, bool) {
		if !strings.HasPrefix(ev.TraceID, prefix) || len(ev.TraceID) != 32 {
			return 0, false
		}
		raw, err := hex.DecodeString(ev.TraceID[16:])
		if err != nil {
			return 0, false
		}
		return int(binary.BigEndian.Uint64(raw)), true
	})
	var retries atomic.Int64

	start := time.Now()
	posts := make(chan [2]int) // traces [from, to)
	errs := make(chan error, opts.Senders)
	var wg sync.WaitGroup
	for range opts.Senders {
		wg.Go(func() {
			for p := range posts {
				body, err := ptraceotlp.NewExportRequestFromTraces(agentRuns(nonce, p[0], p[1], opts.PerTrace)).MarshalProto()
				if err == nil {
					err = exportOnce(ctx, opts, body, &retries)
				}
				if err != nil {
					errs <- err
					return
				}
				w.sentAt(p[0], p[1], time.Now())
			}
		})
	}
	var sendErr error
send:
	for from := 0; from < traces; from += opts.PerPost {
		select {
		case posts <- [2]int{from, min(from+opts.PerPost, traces)}:
		case sendErr = <-errs:
			break send
		case <-ctx.Done():
			sendErr = ctx.Err()
			break send
		}
	}
	close(posts)
	wg.Wait()
	if sendErr == nil && len(errs) > 0 {
		sendErr = <-errs
	}
	if sendErr != nil {
		return OTLPResult{}, sendErr
	}
	exported := time.Since(start)
	if err := w.wait(ctx); err != nil {
		return OTLPResult{}, err
	}
	secs := time.Since(start).Seconds()
	spans := traces * opts.PerTrace
	steps := traces * (opts.PerTrace - 1)
	return OTLPResult{Spans: spans, Steps: steps, Traces: traces, Seconds: secs, SendSeconds: exported.Seconds(),
		SpansPerS: float64(spans) / secs, StepsPerS: float64(steps) / secs, SentPerS: float64(spans) / exported.Seconds(),
		Retries: retries.Load(), Latency: w.latency()}, nil
}

// exportOnce posts one export, again after a retryable refusal (429, 503), as an
// exporter does.
func exportOnce(ctx context.Context, opts OTLPOptions, body []byte, retries *atomic.Int64) error {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		if opts.Token != "" {
			req.Header.Set("Authorization", "Bearer "+opts.Token)
		}
		resp, err := opts.Client.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			er := ptraceotlp.NewExportResponse()
			if err := er.UnmarshalProto(msg); err == nil && er.PartialSuccess().RejectedSpans() > 0 {
				return fmt.Errorf("the receiver rejected %d spans: %s", er.PartialSuccess().RejectedSpans(), er.PartialSuccess().ErrorMessage())
			}
			return nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			retries.Add(1)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		default:
			return fmt.Errorf("the receiver answered HTTP %d: %q", resp.StatusCode, msg)
		}
	}
}

// agentRuns makes traces [from, to) of a load: trace i's id is the load's nonce then i,
// its root an invoke_agent span, the rest alternately chat and execute_tool spans.
func agentRuns(nonce [8]byte, from, to, perTrace int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "bench-agent")
	ss := rs.ScopeSpans().AppendEmpty()
	base := time.Now()
	args := `{"query":"refund status of order 8812","customer":{"id":"cus_8812","email":"jane.doe@example.com"},"notes":"` + strings.Repeat("lorem ipsum ", 40) + `"}`
	for i := from; i < to; i++ {
		var tid pcommon.TraceID
		copy(tid[:8], nonce[:])
		binary.BigEndian.PutUint64(tid[8:], uint64(i))
		root := pcommon.SpanID{0xff, 0, 0, 0, 0, 0, 0, 1}
		at := func(k int) pcommon.Timestamp {
			return pcommon.NewTimestampFromTime(base.Add(time.Duration(k) * time.Millisecond))
		}
		for k := 1; k < perTrace; k++ {
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID(tid)
			sp.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, byte(k >> 8), byte(k)})
			sp.SetParentSpanID(root)
			sp.SetStartTimestamp(at(k))
			sp.SetEndTimestamp(at(k + 1))
			a := sp.Attributes()
			if k%2 == 1 {
				sp.SetName("chat gpt-4o-mini")
				a.PutStr("gen_ai.operation.name", "chat")
				a.PutStr("gen_ai.request.model", "gpt-4o-mini")
				a.PutStr("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"`+strings.Repeat("Why is my refund late? ", 20)+`"}]}]`)
				a.PutInt("gen_ai.usage.input_tokens", 412)
			} else {
				sp.SetName("execute_tool lookup_order")
				a.PutStr("gen_ai.operation.name", "execute_tool")
				a.PutStr("gen_ai.tool.name", "lookup_order")
				a.PutStr("gen_ai.tool.call.arguments", args)
				a.PutStr("gen_ai.tool.call.result", `{"status":"pending","eta_days":3}`)
			}
		}
		sp := ss.Spans().AppendEmpty() // the root ends last, and is exported last
		sp.SetTraceID(tid)
		sp.SetSpanID(root)
		sp.SetName("invoke_agent bench")
		sp.SetStartTimestamp(at(0))
		sp.SetEndTimestamp(at(perTrace + 1))
		sp.Attributes().PutStr("gen_ai.operation.name", "invoke_agent")
		sp.Attributes().PutStr("gen_ai.agent.name", "bench")
	}
	return td
}
