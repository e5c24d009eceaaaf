// A TypeScript SDK client (@modelcontextprotocol/sdk) talking Streamable HTTP to
// server-everything through `troyctl mcp --listen`, run by TestMCPTypeScriptClientHTTP.
// Arguments: node_modules, the proxy's endpoint, a bearer token, a URL the policy forbids
// fetching. Exits non-zero on a failed check.
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, endpoint, token, forbidden] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(modules, "@modelcontextprotocol", p)).href);
const { Client } = await load("sdk/dist/esm/client/index.js");
const { StreamableHTTPClientTransport } = await load("sdk/dist/esm/client/streamableHttp.js");

const transport = new StreamableHTTPClientTransport(new URL(endpoint), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "ts-http-client", version: "1.0.0" });
await client.connect(transport);

const { tools } = await client.listTools();
assert.ok(tools.some((t) => t.name === "echo"), "tools/list names echo");

const echo = await client.callTool({ name: "echo", arguments: { message: "from typescript" } });
assert.notEqual(echo.isError, true);
assert.match(echo.content[0].text, /from typescript/);

const blocked = await client.callTool({ name: "gzip-file-as-resource", arguments: { name: "x.gz", data: forbidden } });
assert.equal(blocked.isError, true);
assert.match(blocked.content[0].text, /no-web-fetch/);

await transport.terminateSession();
await client.close();
console.log("ok");
