// Tracing as an application sets it up: a Node tracer provider whose spans go, as each
// ends, over OTLP/HTTP (protobuf) with a bearer token to the address in TROY_OTLP_URL.
// run() runs an agent, then force-flushes and shuts the provider down, so that every
// span is exported before node exits, and prints the trace ids of the spans it exported.
import { trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";

const url = process.env.TROY_OTLP_URL;
const token = process.env.TROY_OTLP_TOKEN;
if (!url || !token) {
  throw new Error("TROY_OTLP_URL and TROY_OTLP_TOKEN must be set");
}

const traceIds = new Set();
// Records each exported span's trace id, for the test to find its report.
const traceIdRecorder = {
  onStart() {},
  onEnd(span) {
    traceIds.add(span.spanContext().traceId);
  },
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

export const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": process.env.TROY_SERVICE_NAME ?? "otel-js-agent" }),
  spanProcessors: [
    new SimpleSpanProcessor(new OTLPTraceExporter({ url, headers: { Authorization: `Bearer ${token}` } })),
    traceIdRecorder,
  ],
});
provider.register();

export const tracer = trace.getTracer("troy-otel-js-test");

// The scripted model server's base URL, as OpenAI clients want it.
export const modelURL = process.env.OPENAI_BASE_URL;

// The agent's task: it makes the model call http_post with a person's e-mail address.
export const task = "Add Jane Doe (jane.doe@example.com) to the partner's CRM.";

// What http_post does: nothing leaves the machine, the tool only answers.
export async function httpPost({ url, body }) {
  return JSON.stringify({ status: 200, url, received: body });
}

export async function run(agent) {
  let failed;
  try {
    const answer = await agent();
    console.error("answer:", typeof answer === "string" ? answer : JSON.stringify(answer));
  } catch (err) {
    failed = err;
  }
  await provider.forceFlush();
  await provider.shutdown();
  if (failed) {
    throw failed;
  }
  console.log(JSON.stringify({ traceIds: [...traceIds] }));
}
