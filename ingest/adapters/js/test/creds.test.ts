// The guard over NATS against a troyctl serve with authentication on: an agent's
// credential (TROY_CREDS, from troyctl auth agent) gets decisions for its own agent, and
// the server refuses it another agent's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TroyGuard } from "../src/index.js";

const servers = process.env.TROY_NATS_URL;

test("an agent's credential asks the guard for its own agent", async () => {
  const guard = new TroyGuard({ transport: "nats", servers, agentName: "creds-agent", creds: process.env.TROY_CREDS });
  try {
    const d = await guard.check("search", { query: "weather" });
    assert.equal(d.allowed, true);
    await guard.end();
  } finally {
    await guard.close();
  }
});

test("an agent's credential cannot ask the guard for another agent", async () => {
  const guard = new TroyGuard({ transport: "nats", servers, agentName: "someone-else", timeoutMs: 2000 });
  try {
    await assert.rejects(guard.check("search", { query: "weather" }), /[Pp]ermissions? [Vv]iolation|permission/);
  } finally {
    await guard.close();
  }
});
