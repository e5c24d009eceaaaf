// A LangChain.js agent traced by OpenLLMetry's (Traceloop's) LangChain instrumentation.
import { LangChainInstrumentation } from "@traceloop/instrumentation-langchain";
import * as CallbackManagerModule from "@langchain/core/callbacks/manager";
import { run } from "./tracing.mjs";
import { langchainAgent } from "./langchain-agent.mjs";

// The instrumentation also patches the module by a dynamic import of its own, which
// may come after the agent starts: patching it here first makes that certain.
new LangChainInstrumentation().manuallyInstrument({ callbackManagerModule: CallbackManagerModule });

await run(langchainAgent);
