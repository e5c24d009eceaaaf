// The adapters' example runs, shared by the tests against the local guard and against a
// serve: a tool-calling run in which the model asks for bash, which examples/policy.json
// forbids to agents that are not admins. In enforce mode the call is refused and bash never
// runs; in monitor mode it runs and its violation is reported.
import assert from "node:assert/strict";
import { ChatOpenAI } from "@langchain/openai";
import { tool as lcTool } from "@langchain/core/tools";
import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool as agentTool } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";
import { BlockedError, type Decision, type GuardOptions, type Mode, type TroyGuard } from "../src/index.js";
import { TroyCallbackHandler } from "../src/langchain.js";
import { guardTools, troyGuard } from "../src/openai-agents.js";
import { admin, scriptedModel } from "./model.js";

// One model for every run: the Agents SDK keeps the client it was first given.
export const shared = scriptedModel();

/** Runs a LangChain.js tool call under the guard and returns the guard, not yet ended. */
export async function langchainRun(mode: Mode, options: GuardOptions): Promise<TroyGuard> {
  const model = await shared;
  let ran = 0;
  const bash = lcTool(async ({ cmd }: { cmd: string }) => { ran++; return `listing of ${cmd}`; },
    { name: "bash", description: "runs a shell command", schema: z.object({ cmd: z.string() }) });
  const violations: Decision[] = [];
  const handler = new TroyCallbackHandler({ mode, agentName: "lc-js", metadataFn: admin, onViolation: (d) => violations.push(d), ...options });
  const llm = new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "test", configuration: { baseURL: model.url } }).bindTools([bash]);
  const ai = await llm.invoke("what is in the directory?", { callbacks: [handler] });
  assert.equal(ai.tool_calls?.length, 1);
  const call = bash.invoke(ai.tool_calls![0], { callbacks: [handler] });
  if (mode === "enforce") {
    await assert.rejects(call, BlockedError);
    assert.equal(ran, 0);
  } else {
    await call;
    assert.equal(ran, 1);
  }
  assert.equal(violations.length, 1);
  assert.equal(violations[0].violations[0].rule_id, "privileged-escalation-guard");
  return handler.guard;
}

/** Runs an OpenAI Agents JS agent with guarded tools and returns the guard, not yet ended. */
export async function agentsRun(mode: Mode, options: GuardOptions): Promise<TroyGuard> {
  const model = await shared;
  setDefaultOpenAIClient(new OpenAI({ apiKey: "test", baseURL: model.url }) as never); // the SDK pins its own copy of openai
  setOpenAIAPI("chat_completions");
  setTracingDisabled(true);
  let ran = 0;
  const bash = agentTool({ name: "bash", description: "runs a shell command", parameters: z.object({ cmd: z.string() }),
    execute: async ({ cmd }) => { ran++; return `listing of ${cmd}`; } });
  const violations: Decision[] = [];
  const guard = troyGuard({ mode, agentName: "agents-js", metadataFn: admin, onViolation: (d) => violations.push(d), ...options });
  const agent = new Agent({ name: "assistant", instructions: "Answer with the tools.", model: "gpt-4o-mini", tools: guardTools(guard, [bash]) });
  const result = run(agent, "what is in the directory?");
  if (mode === "enforce") {
    // A block stops the run, as PermissionError does in the Python tool's adapters.
    await assert.rejects(result, /troy blocked bash: privileged-escalation-guard/);
    assert.equal(ran, 0);
  } else {
    assert.equal((await result).finalOutput, "the directory is listed");
    assert.equal(ran, 1);
  }
  assert.equal(violations.length, 1);
  return guard;
}
