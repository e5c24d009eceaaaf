// The adapters against a real troyctl serve (TROY_NATS_URL, its reports under
// TROY_REPORTS_DIR) and a scripted OpenAI-compatible model that asks for the bash tool,
// then answers.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { ChatOpenAI } from "@langchain/openai";
import { tool as lcTool } from "@langchain/core/tools";
import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool as agentTool } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";
import { connect } from "@nats-io/transport-node";
import { BlockedError, TraceWriter, TroyGuard, checkId, subjectToken, type Decision } from "../src/index.js";
import { TroyCallbackHandler } from "../src/langchain.js";
import { guardTools, troyGuard } from "../src/openai-agents.js";

const admin = (action: string) => (action === "bash" ? { permission_level: "admin" } : { permission_level: "user" });

async function scriptedModel(): Promise<{ url: string; close: () => void }> {
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const answered = body.includes('"role":"tool"');
    const message = answered
      ? { role: "assistant", content: "the directory is listed" }
      : { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "bash", arguments: '{"cmd":"ls -la"}' } }] };
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({
      id: "scripted", object: "chat.completion", created: 0, model: "gpt-4o-mini",
      choices: [{ index: 0, finish_reason: answered ? "stop" : "tool_calls", message }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1`, close: () => server.close() };
}

// One model for every test: the Agents SDK keeps the client it was first given.
const shared = scriptedModel();
after(async () => (await shared).close());

// report waits for a session's audit.json, for at most ten seconds.
async function report(session: string): Promise<{ trace: { steps: { type: string; description: string; output: Record<string, unknown> }[] } }> {
  const dir = process.env.TROY_REPORTS_DIR!;
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const agent of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      for (const trace of fs.readdirSync(path.join(dir, agent))) {
        const file = path.join(dir, agent, trace, "audit.json");
        if (trace === subjectToken(session) && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8"));
      }
    }
    if (Date.now() > deadline) throw new Error(`no report of ${session}`);
    await new Promise((r) => setTimeout(r, 50)); // polling for the reporter's file, bounded by the deadline
  }
}

for (const mode of ["enforce", "monitor"] as const) {
  test(`LangChain.js tool-calling run, ${mode}`, async () => {
    const model = await shared;
    let ran = 0;
    const bash = lcTool(async ({ cmd }: { cmd: string }) => { ran++; return `listing of ${cmd}`; },
      { name: "bash", description: "runs a shell command", schema: z.object({ cmd: z.string() }) });
    const violations: Decision[] = [];
    const handler = new TroyCallbackHandler({ mode, agentName: "lc-js", metadataFn: admin, onViolation: (d) => violations.push(d) });
    try {
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
      await handler.guard.end();
      const steps = (await report(handler.guard.session)).trace.steps;
      assert.deepEqual(steps.map((s) => `${s.type}:${s.description}`), ["llm_call:ChatOpenAI", "tool_call:bash"]);
      if (mode === "monitor") assert.equal(steps[1].output.result, "listing of ls -la");
    } finally {
      await handler.guard.close();
    }
  });

  test(`OpenAI Agents JS run, ${mode}`, async () => {
    const model = await shared;
    setDefaultOpenAIClient(new OpenAI({ apiKey: "test", baseURL: model.url }) as never); // the SDK pins its own copy of openai
    setOpenAIAPI("chat_completions");
    setTracingDisabled(true);
    let ran = 0;
    const bash = agentTool({ name: "bash", description: "runs a shell command", parameters: z.object({ cmd: z.string() }),
      execute: async ({ cmd }) => { ran++; return `listing of ${cmd}`; } });
    const violations: Decision[] = [];
    const guard = troyGuard({ mode, agentName: "agents-js", metadataFn: admin, onViolation: (d) => violations.push(d) });
    try {
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
      await guard.end();
      const steps = (await report(guard.session)).trace.steps;
      assert.deepEqual(steps.map((s) => `${s.type}:${s.description}`), ["tool_call:bash"]);
    } finally {
      await guard.close();
    }
  });
}

test("subject tokens are troy's", () => {
  assert.equal(subjectToken("a.b c"), "a~2eb~20c");
  assert.equal(subjectToken(""), "~");
  assert.equal(subjectToken("ünï"), "~c3~bcn~c3~af");
});

test("ids follow troy's rules", () => {
  checkId("trace_id", "z".repeat(256));
  checkId("agent_name", "é".repeat(128));
  assert.throws(() => checkId("trace_id", "z".repeat(4100)), /trace_id: 4100 bytes long, over the 256-byte limit for ids/);
  assert.throws(() => checkId("step_id", "a\nb"), /step_id: holds a control character/);
});

test("a trace published to the steps stream is evaluated and reported", async () => {
  const nc = await connect({ servers: process.env.TROY_NATS_URL });
  try {
    const w = new TraceWriter(nc, "js-trace.1", "js-bot", { agent_version: "1.0" });
    await w.step({ step_id: "s1", type: "tool_call", description: "get_customer", input: { id: 7 }, output: {}, metadata: { data_classification: "pii" } });
    await w.step({ step_id: "s2", type: "tool_call", description: "http_post", input: {}, output: {}, metadata: { network_zone: "external" } });
    await w.output("s1", { name: "Jane" });
    await w.end();
    const audit = (await report("js-trace.1")) as unknown as { trace: { steps: { output: Record<string, unknown> }[] }; violations: { rule_id: string; step_id: string }[] };
    assert.equal(audit.trace.steps.length, 2);
    assert.deepEqual(audit.trace.steps[0].output, { name: "Jane" });
    assert.deepEqual(audit.violations.map((v) => `${v.rule_id}@${v.step_id}`), ["pii-exfiltration-protection@s1"]);
  } finally {
    await nc.close();
  }
});

test("a rule that cannot be evaluated blocks in enforce mode and is listed in monitor mode", async () => {
  // the guardrails template's token limit compares total_tokens with a number: a string fails it.
  const policy = process.env.TROY_RULE_ERROR_POLICY!;
  const metadataFn = () => ({ total_tokens: "200000" });
  const enforce = new TroyGuard({ agentName: "js-rules", policy, metadataFn });
  const monitor = new TroyGuard({ agentName: "js-rules", policy, metadataFn, mode: "monitor" });
  try {
    await assert.rejects(enforce.check("chat", { prompt: "hi" }, "llm_call"), (err: unknown) => {
      assert.ok(err instanceof BlockedError);
      assert.equal(err.decision.allowed, false);
      assert.deepEqual(err.decision.violations, []);
      assert.equal(err.decision.rule_errors[0].rule_id, "troy-unbounded-consumption");
      assert.match(err.message, /rule troy-unbounded-consumption could not be evaluated: .*string > int/);
      return true;
    });
    const d: Decision = await monitor.check("chat", {}, "llm_call");
    assert.equal(d.allowed, true);
    assert.equal(d.rule_errors.length, 1);
    assert.deepEqual(Object.keys(d).filter((k) => ["step_id", "allowed", "violations", "risk_score", "mode", "rule_errors"].includes(k)).sort(),
      ["allowed", "mode", "risk_score", "rule_errors", "step_id", "violations"]);
  } finally {
    await enforce.close();
    await monitor.close();
  }
});
