// A LangChain.js agent traced by OpenInference's LangChain instrumentation.
import { LangChainInstrumentation } from "@arizeai/openinference-instrumentation-langchain";
import * as CallbackManagerModule from "@langchain/core/callbacks/manager";
import { run } from "./tracing.mjs";
import { langchainAgent } from "./langchain-agent.mjs";

// LangChain is not patched on load: the callback manager is instrumented by hand.
new LangChainInstrumentation().manuallyInstrument(CallbackManagerModule);

await run(langchainAgent);
