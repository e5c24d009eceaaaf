// LangChain.js callback handler: checks each tool call before it runs (a block throws
// BlockedError, which LangChain raises since the handler asks it to), records LLM calls and
// tool results, and ends the session when the outermost run ends.
import { BaseCallbackHandler } from "@langchain/core/callbacks/base";
import type { Serialized } from "@langchain/core/load/serializable";
import { TroyGuard, type GuardOptions } from "./guard.js";

export class TroyCallbackHandler extends BaseCallbackHandler {
  name = "troy";
  readonly guard: TroyGuard;
  private steps = new Map<string, string>();

  constructor(options: GuardOptions & { guard?: TroyGuard } = {}) {
    super({ raiseError: true });
    this.awaitHandlers = true;
    this.guard = options.guard ?? new TroyGuard({ agentName: "langchain-agent", ...options });
  }

  async handleChatModelStart(llm: Serialized, messages: unknown[][], runId: string): Promise<void> {
    const d = await this.guard.check(String(llm.id?.at(-1) ?? "llm"), { messages: JSON.parse(JSON.stringify(messages)) }, "llm_call");
    this.steps.set(runId, d.step_id);
  }

  async handleLLMEnd(output: { generations: unknown }, runId: string): Promise<void> {
    await this.guard.recordOutput(this.steps.get(runId), { generations: JSON.parse(JSON.stringify(output.generations)) });
    this.steps.delete(runId);
  }

  async handleToolStart(tool: Serialized, input: string, runId: string, _parent?: string, _tags?: string[], _meta?: Record<string, unknown>, runName?: string): Promise<void> {
    const d = await this.guard.check(runName ?? String(tool.id?.at(-1) ?? "tool"), { input }, "tool_call");
    this.steps.set(runId, d.step_id);
  }

  async handleToolEnd(output: unknown, runId: string): Promise<void> {
    const text = typeof output === "string" ? output : (output as { content?: unknown })?.content ?? output;
    await this.guard.recordOutput(this.steps.get(runId), { result: typeof text === "string" ? text : JSON.stringify(text) });
    this.steps.delete(runId);
  }

  async handleToolError(err: Error, runId: string): Promise<void> {
    await this.guard.recordOutput(this.steps.get(runId), { error: String(err?.message ?? err) });
    this.steps.delete(runId);
  }
}
