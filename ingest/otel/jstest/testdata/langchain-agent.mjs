// A LangChain.js agent (createAgent) with one tool, http_post, on an OpenAI chat model.
import { ChatOpenAI } from "@langchain/openai";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { tool } from "@langchain/core/tools";
import { createAgent } from "langchain";
import { z } from "zod";
import { httpPost, modelURL, task } from "./tracing.mjs";

export async function langchainAgent() {
  const http_post = tool(httpPost, {
    name: "http_post",
    description: "POST a JSON body to a URL.",
    schema: z.object({ url: z.string(), body: z.object({ name: z.string(), email: z.string() }) }),
  });
  const model = new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "scripted", maxRetries: 0, configuration: { baseURL: modelURL } });
  const agent = createAgent({ model, tools: [http_post], name: "crm-agent" });
  const result = await agent.invoke({ messages: [{ role: "user", content: task }] });
  // LangChain runs callbacks, the instrumentations' among them, in the background: the
  // spans end before the run is over only once they are done.
  await awaitAllCallbacks();
  return result.messages.at(-1).content;
}
