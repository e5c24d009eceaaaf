// The guard with no server: `troyctl guard --stdio` as a child process (TROY_BIN names the
// binary built for the test; TROY_URL and TROY_NATS_URL are unset).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BlockedError, GuardUnavailableError, TroyGuard, type GuardOptions } from "../src/index.js";
import { admin } from "./model.js";
import { agentsRun, langchainRun, shared } from "./runs.js";

after(async () => (await shared).close());

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test
const policyFile = path.resolve(here, "..", "..", "..", "..", "..", "examples", "policy.json");
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "troy-js-local-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

interface Audit {
  trace: { trace_id: string; steps: { type: string; description: string; output: Record<string, unknown> }[] };
  violations: { rule_id: string }[];
  risk_score: number;
}

// alive tells whether a process exists (signal 0 only checks).
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, "ESRCH");
    return false;
  }
}

// gone waits, for at most ten seconds, until a process no longer exists.
async function gone(pid: number): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20)); // polling the process table, bounded by the deadline
  }
  return true;
}

// ended ends a guard and checks what the local guard leaves: report.md and audit.json, and
// no child process.
async function ended(guard: TroyGuard): Promise<Audit> {
  const pid = guard.pid!;
  assert.ok(pid > 0);
  const files = await guard.end();
  assert.ok(fs.existsSync(files.report!), `no report at ${files.report}`);
  assert.match(fs.readFileSync(files.report!, "utf8"), /privileged-escalation-guard/);
  assert.ok(!alive(pid), "the guard's child process outlived end()");
  const audit = (await guard.report()) as unknown as Audit;
  assert.deepEqual(audit, JSON.parse(fs.readFileSync(files.audit!, "utf8")));
  assert.equal(audit.trace.trace_id, guard.session);
  return audit;
}

const policies: [string, GuardOptions["policy"]][] = [
  ["a policy file", policyFile],
  ["a policy object", JSON.parse(fs.readFileSync(policyFile, "utf8"))],
];

for (const [what, policy] of policies) {
  for (const mode of ["enforce", "monitor"] as const) {
    test(`LangChain.js run against the local guard with ${what}, ${mode}`, async () => {
      const guard = await langchainRun(mode, { policy, dataDir });
      assert.equal(guard.transport, "local");
      const audit = await ended(guard);
      assert.deepEqual(audit.trace.steps.map((s) => `${s.type}:${s.description}`), ["llm_call:ChatOpenAI", "tool_call:bash"]);
      if (mode === "monitor") assert.equal(audit.trace.steps[1].output.result, "listing of ls -la");
      assert.deepEqual(audit.violations.map((v) => v.rule_id), ["privileged-escalation-guard"]);
    });

    test(`OpenAI Agents JS run against the local guard with ${what}, ${mode}`, async () => {
      const reportDir = fs.mkdtempSync(path.join(dataDir, "report-"));
      const guard = await agentsRun(mode, { policy, dataDir, reportDir });
      const audit = await ended(guard);
      assert.ok(fs.existsSync(path.join(reportDir, "audit.json")), "end() did not write into reportDir");
      assert.deepEqual(audit.trace.steps.map((s) => `${s.type}:${s.description}`), ["tool_call:bash"]);
    });
  }
}

test("a blocked tool call is refused with the Python tool's decision", async () => {
  const guard = new TroyGuard({ policy: policyFile, dataDir, agentName: "js-local", metadataFn: admin });
  try {
    await assert.rejects(guard.check("bash", { cmd: "rm -rf /" }), (err: unknown) => {
      assert.ok(err instanceof BlockedError && !(err instanceof GuardUnavailableError));
      const d = err.decision;
      assert.equal(d.allowed, false);
      assert.equal(d.mode, "enforce");
      assert.ok(d.step_id);
      assert.ok(d.risk_score > 0);
      assert.equal(d.violations.length, 1);
      const v = d.violations[0];
      assert.equal(v.rule_id, "privileged-escalation-guard");
      assert.equal(v.severity, "critical");
      assert.ok(v.rule_description.length > 0);
      assert.equal(typeof v.details, "string");
      assert.match(err.message, /^troy blocked bash: privileged-escalation-guard$/);
      return true;
    });
    const d = await guard.check("search", { q: "weather" });
    assert.equal(d.allowed, true);
    await guard.recordOutput(d.step_id, { result: "sunny" });
    assert.equal(guard.policyId, "example-agent-policy");
    assert.ok(guard.rules! > 0);
    const trace = (await guard.trace()) as { steps: { description: string; output: Record<string, unknown> }[] };
    assert.deepEqual(trace.steps.map((s) => s.description), ["bash", "search"]);
    assert.deepEqual(trace.steps[1].output, { result: "sunny" });
    const before = guard.session;
    assert.notEqual(await guard.reset(), before);
    assert.equal(guard.session, (await guard.trace() as { trace_id: string }).trace_id);
  } finally {
    await guard.close();
  }
});

test("the child process exits when the guard ends, and the guard then refuses checks", async () => {
  const guard = new TroyGuard({ policy: "owasp_llm_top10", dataDir, agentName: "js-end" });
  await guard.start();
  const pid = guard.pid!;
  assert.ok(alive(pid));
  await guard.end();
  assert.ok(!alive(pid));
  await assert.rejects(guard.check("search"), (err: unknown) => {
    assert.ok(err instanceof GuardUnavailableError);
    assert.match(err.message, /the guard of session js-end-\w+ has ended/);
    return true;
  });
});

test("a child that dies refuses the checks in enforce mode (fails closed), and allows them in monitor mode or with failOpen", async () => {
  for (const [mode, failOpen] of [["enforce", false], ["monitor", false], ["enforce", true]] as const) {
    const guard = new TroyGuard({ policy: policyFile, dataDir, mode, failOpen });
    await guard.start();
    process.kill(guard.pid!, "SIGKILL");
    for (let i = 0; i < 2; i++) { // the check in flight when it dies and the next one
      if (mode === "enforce" && !failOpen) {
        await assert.rejects(guard.check("search"), (err: unknown) => {
          assert.ok(err instanceof GuardUnavailableError && err instanceof BlockedError);
          assert.match(err.message, /troy guard could not answer the check of search, so it is refused: .*was killed by SIGKILL/);
          assert.equal(err.decision.rule_errors[0].rule_id, "troy-guard");
          return true;
        });
      } else {
        const d = await guard.check("search");
        assert.equal(d.allowed, true);
        assert.equal(d.rule_errors[0].rule_id, "troy-guard");
        assert.match(d.rule_errors[0].error, /the guard is unavailable: .*was killed by SIGKILL/);
      }
    }
    await guard.close();
  }
});

test("a missing troyctl or a bad policy is a clear error", async () => {
  const missing = new TroyGuard({ policy: policyFile, troyBin: path.join(dataDir, "no-troyctl") });
  await assert.rejects(missing.start(), /cannot start the local guard: .*no-troyctl was not found \(put troyctl on PATH/);
  await assert.rejects(missing.check("search"), GuardUnavailableError);
  const bad = new TroyGuard({ policy: path.join(dataDir, "no-such-policy.json"), dataDir });
  await assert.rejects(bad.start(), /no-such-policy/);
  await assert.rejects(bad.check("search"), (err: unknown) => err instanceof GuardUnavailableError && /no-such-policy/.test(err.message));
  await bad.close();
  assert.throws(() => new TroyGuard({}), /without TROY_URL the guard runs locally and needs a policy/);
});

test("a rule that cannot be evaluated blocks in enforce mode and is listed in monitor mode", async () => {
  // the guardrails template's token limit compares total_tokens with a number: a string fails it.
  const metadataFn = () => ({ total_tokens: "200000" });
  const enforce = new TroyGuard({ agentName: "js-rules", policy: "guardrails", metadataFn, dataDir });
  const monitor = new TroyGuard({ agentName: "js-rules", policy: "guardrails", metadataFn, dataDir, mode: "monitor" });
  try {
    await assert.rejects(enforce.check("chat", { prompt: "hi" }, "llm_call"), (err: unknown) => {
      assert.ok(err instanceof BlockedError);
      assert.deepEqual(err.decision.violations, []);
      assert.equal(err.decision.rule_errors[0].rule_id, "troy-unbounded-consumption");
      return true;
    });
    const d = await monitor.check("chat", {}, "llm_call");
    assert.equal(d.allowed, true);
    assert.equal(d.rule_errors[0].rule_id, "troy-unbounded-consumption");
  } finally {
    await enforce.close();
    await monitor.close();
  }
});

test("a guard left open keeps Node from exiting no longer than its requests, and its child goes with it", async () => {
  const index = path.resolve(here, "..", "src", "index.js");
  const script = `
    import { TroyGuard } from ${JSON.stringify(index)};
    const g = new TroyGuard({ policy: ${JSON.stringify(policyFile)}, dataDir: ${JSON.stringify(dataDir)} });
    await g.check("search");
    console.log(g.pid);`; // no end(), no close()
  const node = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  node.stdout.on("data", (b) => (out += b));
  const timer = setTimeout(() => node.kill(), 30_000);
  const [code] = await once(node, "exit");
  clearTimeout(timer);
  assert.equal(code, 0, "node did not exit by itself within 30 s");
  const pid = Number(out.trim());
  assert.ok(pid > 0, `no pid printed: ${out}`);
  assert.ok(await gone(pid), `the child ${pid} outlived node`);
});

test("where a guard asks", () => {
  const hash = "a".repeat(64);
  const cases: [Record<string, string>, GuardOptions, string][] = [
    [{}, { policy: policyFile }, "local"],
    [{}, { policy: "soc2", servers: "nats://127.0.0.1:1" }, "nats"],
    [{ TROY_URL: "http://127.0.0.1:1" }, { policy: policyFile }, "http"],
    [{ TROY_URL: "http://127.0.0.1:1", TROY_NATS_URL: "nats://127.0.0.1:1" }, {}, "http"],
    [{ TROY_NATS_URL: "nats://127.0.0.1:1" }, {}, "nats"],
    [{ TROY_NATS_URL: "nats://127.0.0.1:1" }, { policy: hash }, "nats"],
    [{ TROY_NATS_URL: "nats://127.0.0.1:1" }, { policy: "soc2" }, "local"],
    [{ TROY_URL: "http://127.0.0.1:1" }, { policy: policyFile, transport: "local" }, "local"],
  ];
  for (const [env, options, want] of cases) {
    Object.assign(process.env, env);
    try {
      assert.equal(new TroyGuard(options).transport, want, `${JSON.stringify(env)} ${JSON.stringify(options)}`);
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
    }
  }
  assert.throws(() => new TroyGuard({ servers: "nats://127.0.0.1:1", policy: { rules: [] } }), /over NATS the policy is a stored revision's hash/);
});
