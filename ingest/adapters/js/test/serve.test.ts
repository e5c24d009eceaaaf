// The adapters against a real troyctl serve: over NATS (TROY_NATS_URL, given as `servers`)
// and over its HTTP gateway (TROY_URL, TROY_TOKEN), its reports under TROY_REPORTS_DIR.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { BlockedError, GuardUnavailableError, TraceWriter, TroyGuard, TroyHttpError, checkId, subjectToken, type Decision, type GuardOptions } from "../src/index.js";
import { admin } from "./model.js";
import { agentsRun, langchainRun, shared } from "./runs.js";

after(async () => (await shared).close());

const nats: GuardOptions = { servers: process.env.TROY_NATS_URL };

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

const transports: [string, GuardOptions][] = [["NATS", nats], ["TROY_URL", {}]];

for (const [name, options] of transports) {
  for (const mode of ["enforce", "monitor"] as const) {
    test(`LangChain.js tool-calling run over ${name}, ${mode}`, async () => {
      const guard = await langchainRun(mode, options);
      try {
        assert.equal(guard.transport, name === "NATS" ? "nats" : "http");
        await guard.end();
        const steps = (await report(guard.session)).trace.steps;
        assert.deepEqual(steps.map((s) => `${s.type}:${s.description}`), ["llm_call:ChatOpenAI", "tool_call:bash"]);
        if (mode === "monitor") assert.equal(steps[1].output.result, "listing of ls -la");
      } finally {
        await guard.close();
      }
    });

    test(`OpenAI Agents JS run over ${name}, ${mode}`, async () => {
      const guard = await agentsRun(mode, options);
      try {
        await guard.end();
        const steps = (await report(guard.session)).trace.steps;
        assert.deepEqual(steps.map((s) => `${s.type}:${s.description}`), ["tool_call:bash"]);
      } finally {
        await guard.close();
      }
    });
  }
}

test("with TROY_URL, a policy object is uploaded to the deployment and checks use it", async (t) => {
  // A rule of its own, in the Python tool's dialect, so that a block can only come from it.
  const policy = {
    policy_id: "js-uploaded",
    description: "uploaded by the TypeScript guard",
    rules: [{ rule_id: "no-admin-tools", description: "no admin tools", condition: "get(step, 'metadata.permission_level') == 'admin'", severity: "high", weight: 30 }],
  };
  const guard = new TroyGuard({ agentName: "js-upload", policy, metadataFn: admin });
  assert.equal(guard.transport, "http");
  try {
    const err = await guard.check("bash", { cmd: "ls" }).then(() => undefined, (e: unknown) => e);
    if (err instanceof GuardUnavailableError && err.cause instanceof TroyHttpError && [404, 405].includes(err.cause.status)) {
      t.skip(`this serve's gateway stores no policies: ${err.cause.message}`);
      return;
    }
    assert.ok(err instanceof BlockedError && !(err instanceof GuardUnavailableError), `expected a block, got ${err}`);
    assert.deepEqual(err.decision.violations.map((v) => v.rule_id), ["no-admin-tools"]);
    assert.equal((await guard.check("search", { q: "x" })).allowed, true);
    await guard.end();
    const audit = (await report(guard.session)) as unknown as { violations: { rule_id: string }[] };
    assert.deepEqual(audit.violations.map((v) => v.rule_id), ["no-admin-tools"]);
  } finally {
    await guard.close();
  }
});

test("over HTTP, an unreachable gateway refuses the check in enforce mode, and allows it with failOpen or in monitor mode", async () => {
  const url = "http://127.0.0.1:9"; // the discard port: nothing answers HTTP there
  const closed = new TroyGuard({ url, timeoutMs: 2000 });
  await assert.rejects(closed.check("search"), (err: unknown) => {
    assert.ok(err instanceof GuardUnavailableError);
    assert.ok(err instanceof BlockedError);
    assert.match(err.message, /troy guard could not answer the check of search, so it is refused: troy: 0 unavailable/);
    return true;
  });
  for (const options of [{ failOpen: true }, { mode: "monitor" as const }]) {
    const d = await new TroyGuard({ url, timeoutMs: 2000, ...options }).check("search");
    assert.equal(d.allowed, true);
    assert.match(d.rule_errors[0].error, /the guard is unavailable: troy: 0 unavailable/);
  }
});

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
  const enforce = new TroyGuard({ ...nats, agentName: "js-rules", policy, metadataFn });
  const monitor = new TroyGuard({ ...nats, agentName: "js-rules", policy, metadataFn, mode: "monitor" });
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
