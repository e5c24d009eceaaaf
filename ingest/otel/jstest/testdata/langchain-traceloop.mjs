// A LangChain.js agent traced by OpenLLMetry's (Traceloop's) LangChain instrumentation.
import { LangChainInstrumentation } from "@traceloop/instrumentation-langchain";
import * as CallbackManagerModule from "@langchain/core/callbacks/manager";
import { run, tracer } from "./tracing.mjs";
import { langchainAgent } from "./langchain-agent.mjs";

// The instrumentation also patches the module by a dynamic import of its own, which
// may come after the agent starts: patching it here first makes that certain.
new LangChainInstrumentation().manuallyInstrument({ callbackManagerModule: CallbackManagerModule });

// The instrumentation starts each span in the active context, not under the span of its
// LangChain parent: without a span around the run, each would be a trace of its own. The
// run goes under a workflow span, as the Traceloop SDK's withWorkflow makes one.
await run(() =>
  tracer.startActiveSpan(
    "crm-agent.workflow",
    { attributes: { "traceloop.span.kind": "workflow", "traceloop.workflow.name": "crm-agent" } },
    async (span) => {
      try {
        return await langchainAgent();
      } finally {
        span.end();
      }
    },
  ),
);
