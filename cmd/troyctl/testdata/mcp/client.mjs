// A TypeScript SDK client (@modelcontextprotocol/sdk) talking to server-filesystem through
// `troyctl mcp`, run by TestMCPTypeScriptClient. Arguments: node_modules, troyctl, policy,
// work directory, private directory, report directory. Exits non-zero on a failed check.
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, troyctl, policy, work, priv, reports] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(modules, "@modelcontextprotocol", p)).href);
const { Client } = await load("sdk/dist/esm/client/index.js");
const { StdioClientTransport } = await load("sdk/dist/esm/client/stdio.js");

const server = join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js");
const transport = new StdioClientTransport({
  command: troyctl,
  args: ["mcp", "--policy", policy, "-o", reports, "--data-dir", join(reports, "..", "data"), "--", process.execPath, server, work, priv],
  stderr: "inherit",
});
const client = new Client({ name: "ts-client", version: "1.0.0" });
await client.connect(transport);

const { tools } = await client.listTools();
assert.ok(tools.some((t) => t.name === "write_file"), "tools/list names write_file");

const read = await client.callTool({ name: "read_text_file", arguments: { path: join(work, "notes.txt") } });
assert.equal(read.isError, undefined);
assert.equal(read.content[0].text, "hello from the real server\n");

const blocked = await client.callTool({ name: "write_file", arguments: { path: join(priv, "stolen.txt"), content: "x" } });
assert.equal(blocked.isError, true);
assert.match(blocked.content[0].text, /write-outside-work/);

await client.close();
console.log("ok");
