// The Vercel AI SDK's generateText with a tool, its telemetry on: once with the
// OpenTelemetry integration (GenAI conventions: invoke_agent, chat, execute_tool spans),
// once with the legacy one (ai.* spans), each a trace of its own.
import { createOpenAI } from "@ai-sdk/openai";
import { LegacyOpenTelemetry, OpenTelemetry } from "@ai-sdk/otel";
import { generateText, registerTelemetry, stepCountIs, tool } from "ai";
import { z } from "zod";
import { httpPost, modelURL, run, task } from "./tracing.mjs";

registerTelemetry(new OpenTelemetry());

const openai = createOpenAI({ baseURL: modelURL, apiKey: "scripted" });
const tools = {
  http_post: tool({
    description: "POST a JSON body to a URL.",
    inputSchema: z.object({ url: z.string(), body: z.object({ name: z.string(), email: z.string() }) }),
    execute: httpPost,
  }),
};

await run(async () => {
  const answers = [];
  for (const integrations of [undefined, new LegacyOpenTelemetry()]) {
    const { text } = await generateText({
      model: openai.chat("gpt-4o-mini"),
      tools,
      stopWhen: stepCountIs(3),
      maxRetries: 0,
      prompt: task,
      experimental_telemetry: { isEnabled: true, functionId: "crm-agent", ...(integrations && { integrations }) },
    });
    answers.push(text);
  }
  return answers;
});
