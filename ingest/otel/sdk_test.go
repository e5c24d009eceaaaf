package otel

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var update = flag.Bool("update", false, "write testdata/*.otlp.jsonl from the OpenTelemetry SDK")

// collector is an OTLP/HTTP endpoint that writes each export it receives as one line of
// OTLP JSON, as the collector's file exporter does.
type collector struct {
	mu    sync.Mutex
	lines bytes.Buffer
	srv   *httptest.Server
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var td ptrace.Traces
		if err == nil {
			td, err = DecodeProto(body)
		}
		var js []byte
		if err == nil {
			js, err = ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
		}
		if err != nil {
			t.Errorf("collector: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.lines.Write(js)
		c.lines.WriteByte('\n')
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// provider is a tracer provider of the real SDK exporting every span, as it ends, to the
// collector over OTLP/HTTP.
func (c *collector) provider(t *testing.T, service string) *sdktrace.TracerProvider {
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(c.srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("deployment.environment", "production"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func (c *collector) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.lines.Bytes())
}

// span starts a span at a fixed offset from base, ends it at end, and returns its context.
type clock struct{ base time.Time }

func (k clock) at(s float64) time.Time { return k.base.Add(time.Duration(s * float64(time.Second))) }

func run(ctx context.Context, tr trace.Tracer, k clock, name string, start, end float64, kind trace.SpanKind, attrs []attribute.KeyValue, body func(context.Context)) {
	ctx, sp := tr.Start(ctx, name, trace.WithTimestamp(k.at(start)), trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	if body != nil {
		body(ctx)
	}
	sp.End(trace.WithTimestamp(k.at(end)))
}

// genAIRun is an agent run under the GenAI semantic conventions: invoke_agent, chat,
// execute_tool … with an HTTP call under a tool, and another service's unrelated trace.
func genAIRun(t *testing.T, c *collector) {
	ctx := context.Background()
	tr := c.provider(t, "support-service").Tracer("github.com/acme/support-agent")
	k := clock{time.Date(2026, 3, 2, 9, 14, 0, 0, time.UTC)}
	chat := func(ctx context.Context, start, end float64, in, out string) {
		run(ctx, tr, k, "chat gpt-4o-mini", start, end, trace.SpanKindClient, []attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "chat"),
			attribute.String("gen_ai.provider.name", "openai"),
			attribute.String("gen_ai.request.model", "gpt-4o-mini"),
			attribute.String("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
			attribute.Int("gen_ai.usage.input_tokens", 412),
			attribute.Int("gen_ai.usage.output_tokens", 38),
			attribute.String("gen_ai.input.messages", in),
			attribute.String("gen_ai.output.messages", out),
		}, nil)
	}
	tool := func(ctx context.Context, start, end float64, name, args, result string, extra ...attribute.KeyValue) {
		attrs := append([]attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "execute_tool"),
			attribute.String("gen_ai.tool.name", name),
			attribute.String("gen_ai.tool.type", "function"),
			attribute.String("gen_ai.tool.call.id", "call_"+name),
			attribute.String("gen_ai.tool.call.arguments", args),
			attribute.String("gen_ai.tool.call.result", result),
		}, extra...)
		run(ctx, tr, k, "execute_tool "+name, start, end, trace.SpanKindInternal, attrs, func(ctx context.Context) {
			if name == "http_post" {
				run(ctx, tr, k, "POST", start+0.1, end-0.1, trace.SpanKindClient, []attribute.KeyValue{
					attribute.String("http.request.method", "POST"),
					attribute.String("url.full", "https://enrich.example-partner.io/v1/people"),
					attribute.Int("http.response.status_code", 200),
				}, nil)
			}
		})
	}
	run(ctx, tr, k, "invoke_agent support-assistant", 0, 20, trace.SpanKindInternal, []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", "invoke_agent"),
		attribute.String("gen_ai.agent.name", "support-assistant"),
		attribute.String("gen_ai.agent.id", "asst_8812"),
		attribute.String("gen_ai.provider.name", "openai"),
		attribute.String("troy.permission_level", "user"),
	}, func(ctx context.Context) {
		chat(ctx, 1, 3,
			`[{"role":"user","parts":[{"type":"text","content":"Customer #8812 asks why their refund is late."}]}]`,
			`[{"role":"assistant","parts":[{"type":"tool_call","id":"call_get_customer_profile","name":"get_customer_profile","arguments":{"customer_id":"cus_8812"}}],"finish_reason":"tool_call"}]`)
		tool(ctx, 4, 5, "get_customer_profile", `{"customer_id":"cus_8812"}`,
			`{"name":"Jane Doe","email":"jane.doe@example.com","phone":"+1 415 555 0134"}`,
			attribute.String("troy.data_classification", "pii"), attribute.String("troy.network_zone", "internal"))
		tool(ctx, 6, 7, "run_sql", `{"query":"SELECT * FROM refunds WHERE customer_id = 'cus_8812'"}`,
			`{"rows":[{"status":"pending"}]}`, attribute.String("troy.network_zone", "internal"))
		chat(ctx, 8, 10,
			`[{"role":"user","parts":[{"type":"text","content":"Customer #8812 asks why their refund is late."}]}]`,
			`[{"role":"assistant","parts":[{"type":"tool_call","id":"call_http_post","name":"http_post","arguments":{"url":"https://enrich.example-partner.io/v1/people"}}],"finish_reason":"tool_call"}]`)
		tool(ctx, 11, 13, "http_post", `{"url":"https://enrich.example-partner.io/v1/people","body":{"name":"Jane Doe","email":"jane.doe@example.com"}}`,
			`{"status":200}`, attribute.String("troy.network_zone", "external"))
		chat(ctx, 14, 19,
			`[{"role":"user","parts":[{"type":"text","content":"Write the reply."}]}]`,
			`[{"role":"assistant","parts":[{"type":"text","content":"Your refund is pending: the bank transfer is delayed."}],"finish_reason":"stop"}]`)
	})
	// Another service, instrumented too, in the same export stream: no GenAI spans.
	other := c.provider(t, "billing-api").Tracer("net/http")
	run(ctx, other, k, "GET /invoices", 2, 3, trace.SpanKindServer, []attribute.KeyValue{
		attribute.String("http.request.method", "GET"), attribute.String("url.path", "/invoices"),
	}, nil)
}

// openInferenceRun has the attributes OpenInference's instrumentations set
// (openinference.span.kind, input.value, llm.*, tool.*).
func openInferenceRun(t *testing.T, c *collector) {
	ctx := context.Background()
	tr := c.provider(t, "research-agent").Tracer("openinference.instrumentation.langchain")
	k := clock{time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	run(ctx, tr, k, "AgentExecutor", 0, 10, trace.SpanKindInternal, []attribute.KeyValue{
		attribute.String("openinference.span.kind", "AGENT"),
		attribute.String("agent.name", "research-assistant"),
		attribute.String("input.value", `{"input":"Find our refund policy"}`),
		attribute.String("input.mime_type", "application/json"),
	}, func(ctx context.Context) {
		run(ctx, tr, k, "RunnableSequence", 0.5, 9, trace.SpanKindInternal, []attribute.KeyValue{
			attribute.String("openinference.span.kind", "CHAIN"),
		}, func(ctx context.Context) {
			run(ctx, tr, k, "ChatOpenAI", 1, 2, trace.SpanKindInternal, []attribute.KeyValue{
				attribute.String("openinference.span.kind", "LLM"),
				attribute.String("llm.model_name", "gpt-4o-mini"),
				attribute.String("llm.provider", "openai"),
				attribute.String("llm.invocation_parameters", `{"temperature":0}`),
				attribute.String("llm.input_messages.0.message.role", "system"),
				attribute.String("llm.input_messages.0.message.content", "You answer from documents."),
				attribute.String("llm.input_messages.1.message.role", "user"),
				attribute.String("llm.input_messages.1.message.content", "Find our refund policy"),
				attribute.String("llm.output_messages.0.message.role", "assistant"),
				attribute.String("llm.output_messages.0.message.tool_calls.0.tool_call.function.name", "search_docs"),
				attribute.String("llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments", `{"query":"refund policy"}`),
				attribute.Int("llm.token_count.prompt", 52),
				attribute.Int("llm.token_count.completion", 12),
			}, nil)
			run(ctx, tr, k, "search_docs", 3, 4, trace.SpanKindInternal, []attribute.KeyValue{
				attribute.String("openinference.span.kind", "TOOL"),
				attribute.String("tool.name", "search_docs"),
				attribute.String("tool.description", "Search the knowledge base"),
				attribute.String("input.value", `{"query":"refund policy"}`),
				attribute.String("output.value", "Refunds are paid within 14 days."),
			}, nil)
			run(ctx, tr, k, "VectorStoreRetriever", 5, 6, trace.SpanKindInternal, []attribute.KeyValue{
				attribute.String("openinference.span.kind", "RETRIEVER"),
				attribute.String("input.value", "refund policy"),
				attribute.String("retrieval.documents.0.document.content", "Refunds are paid within 14 days."),
				attribute.String("retrieval.documents.0.document.id", "doc-7"),
			}, nil)
			run(ctx, tr, k, "pii-guard", 7, 8, trace.SpanKindInternal, []attribute.KeyValue{
				attribute.String("openinference.span.kind", "GUARDRAIL"),
				attribute.String("input.value", "Refunds are paid within 14 days."),
				attribute.String("output.value", `{"passed":true}`),
			}, nil)
		})
	})
}

// vercelRun has the attributes the Vercel AI SDK's telemetry sets (ai.*).
func vercelRun(t *testing.T, c *collector) {
	ctx := context.Background()
	tr := c.provider(t, "weather-app").Tracer("ai")
	k := clock{time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)}
	run(ctx, tr, k, "ai.generateText", 0, 5, trace.SpanKindInternal, []attribute.KeyValue{
		attribute.String("operation.name", "ai.generateText weather"),
		attribute.String("ai.operationId", "ai.generateText"),
		attribute.String("ai.telemetry.functionId", "weather"),
		attribute.String("ai.model.id", "gpt-4o-mini"),
		attribute.String("ai.model.provider", "openai.chat"),
		attribute.String("ai.prompt", `{"prompt":"What is the weather in Paris?"}`),
	}, func(ctx context.Context) {
		run(ctx, tr, k, "ai.generateText.doGenerate", 0.5, 2, trace.SpanKindInternal, []attribute.KeyValue{
			attribute.String("operation.name", "ai.generateText.doGenerate weather"),
			attribute.String("ai.operationId", "ai.generateText.doGenerate"),
			attribute.String("ai.model.id", "gpt-4o-mini"),
			attribute.String("ai.model.provider", "openai.chat"),
			attribute.String("ai.prompt.messages", `[{"role":"user","content":[{"type":"text","text":"What is the weather in Paris?"}]}]`),
			attribute.String("ai.response.toolCalls", `[{"toolCallType":"function","toolCallId":"call_1","toolName":"weather","args":"{\"city\":\"Paris\"}"}]`),
			attribute.String("ai.response.finishReason", "tool-calls"),
			attribute.String("gen_ai.system", "openai.chat"),
			attribute.String("gen_ai.request.model", "gpt-4o-mini"),
			attribute.Int("gen_ai.usage.input_tokens", 60),
			attribute.Int("gen_ai.usage.output_tokens", 15),
		}, nil)
		run(ctx, tr, k, "ai.toolCall", 2.1, 2.5, trace.SpanKindInternal, []attribute.KeyValue{
			attribute.String("operation.name", "ai.toolCall weather"),
			attribute.String("ai.operationId", "ai.toolCall"),
			attribute.String("ai.toolCall.name", "weather"),
			attribute.String("ai.toolCall.id", "call_1"),
			attribute.String("ai.toolCall.args", `{"city":"Paris"}`),
			attribute.String("ai.toolCall.result", `{"city":"Paris","temperature":18}`),
		}, nil)
		run(ctx, tr, k, "ai.generateText.doGenerate", 2.6, 4.5, trace.SpanKindInternal, []attribute.KeyValue{
			attribute.String("operation.name", "ai.generateText.doGenerate weather"),
			attribute.String("ai.operationId", "ai.generateText.doGenerate"),
			attribute.String("ai.model.id", "gpt-4o-mini"),
			attribute.String("ai.prompt.messages", `[{"role":"user","content":[{"type":"text","text":"What is the weather in Paris?"}]}]`),
			attribute.String("ai.response.text", "It is 18°C in Paris."),
			attribute.String("gen_ai.request.model", "gpt-4o-mini"),
		}, nil)
	})
}

var sdkRuns = map[string]func(*testing.T, *collector){
	"genai-agent.otlp.jsonl":   genAIRun,
	"openinference.otlp.jsonl": openInferenceRun,
	"vercel-ai.otlp.jsonl":     vercelRun,
}

// TestSDKRuns runs each instrumented run through the real SDK and its OTLP/HTTP exporter,
// maps what was exported, and checks it maps as the committed testdata file does (ids
// and times are the SDK's own, so the comparison is of the steps' shapes). With -update
// it writes the files.
func TestSDKRuns(t *testing.T) {
	for name, fn := range sdkRuns {
		t.Run(name, func(t *testing.T) {
			c := newCollector(t)
			fn(t, c)
			out := c.output()
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			committed, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -run TestSDKRuns -update writes it)", err)
			}
			got, want := shapes(t, out), shapes(t, committed)
			if len(got) == 0 || !equalShapes(got, want) {
				t.Fatalf("the SDK's run maps to\n%v\nthe committed file to\n%v", got, want)
			}
		})
	}
}
