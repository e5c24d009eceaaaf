// OpenAI Agents JS: guardTools wraps function tools so that each call is checked before it
// runs and its result recorded. A blocked call does not run, and its BlockedError stops the
// run, as PermissionError does in the Python tool's adapters.
import type { FunctionTool, Tool } from "@openai/agents";
import { TroyGuard, type GuardOptions } from "./guard.js";

export function troyGuard(options: GuardOptions = {}): TroyGuard {
  return new TroyGuard({ agentName: "openai-agent", ...options });
}

export function guardTools<T extends Tool[]>(guard: TroyGuard, tools: T): T {
  return tools.map((t) => {
    if (t.type !== "function") return t;
    const fn = t as FunctionTool;
    const invoke = fn.invoke.bind(fn);
    const guarded: FunctionTool = {
      ...fn,
      invoke: async (ctx, input, details) => {
        let args: Record<string, unknown> = {};
        try {
          args = JSON.parse(input);
        } catch {
          args = { input };
        }
        const d = await guard.check(fn.name, args, "tool_call");
        try {
          const out = await invoke(ctx, input, details);
          await guard.recordOutput(d.step_id, { result: typeof out === "string" ? out : JSON.stringify(out) });
          return out;
        } catch (err) {
          await guard.recordOutput(d.step_id, { error: String((err as Error)?.message ?? err) });
          throw err;
        }
      },
    };
    return guarded;
  }) as T;
}
