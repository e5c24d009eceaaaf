// Captures the tools/list answers of real MCP servers installed from npm, as they send
// them, into servers/<name>.json. Run from a directory where the packages of README.md
// are installed: node capture.mjs OUTDIR
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = process.argv[2];
const root = mkdtempSync(join(tmpdir(), "mcp-root-"));
const bin = (p) => join("node_modules", ".bin", p);
const servers = [
  ["server-filesystem", "@modelcontextprotocol/server-filesystem", [bin("mcp-server-filesystem"), root]],
  ["server-everything", "@modelcontextprotocol/server-everything", [bin("mcp-server-everything")]],
  ["server-memory", "@modelcontextprotocol/server-memory", [bin("mcp-server-memory")], { MEMORY_FILE_PATH: join(root, "memory.jsonl") }],
  ["server-sequential-thinking", "@modelcontextprotocol/server-sequential-thinking", [bin("mcp-server-sequential-thinking")]],
  ["server-github", "@modelcontextprotocol/server-github", [bin("mcp-server-github")]],
  ["mcp-fetch", "@kazuph/mcp-fetch", [bin("mcp-fetch")]],
  ["context7-mcp", "@upstash/context7-mcp", [bin("context7-mcp")]],
  ["desktop-commander", "@wonderwhy-er/desktop-commander", [bin("desktop-commander")]],
  ["playwright-mcp", "@playwright/mcp", [bin("playwright-mcp")]],
  ["chrome-devtools-mcp", "chrome-devtools-mcp", [bin("chrome-devtools-mcp")]],
  ["notion-mcp-server", "@notionhq/notion-mcp-server", [bin("notion-mcp-server")]],
  ["server-puppeteer", "@modelcontextprotocol/server-puppeteer", [bin("mcp-server-puppeteer")]],
  ["server-pdf", "@modelcontextprotocol/server-pdf", [bin("mcp-pdf-server"), "--stdio"]],
  ["server-map", "@modelcontextprotocol/server-map", [bin("mcp-map-server"), "--stdio"]],
  ["server-system-monitor", "@modelcontextprotocol/server-system-monitor", [bin("mcp-system-monitor-server"), "--stdio"]],
  ["server-wiki-explorer", "@modelcontextprotocol/server-wiki-explorer", [bin("mcp-wiki-explorer-server"), "--stdio"]],
];

const only = process.argv.slice(3);
for (const [name, pkg, argv, env] of servers) {
  if (only.length > 0 && !only.includes(name)) continue;
  const version = JSON.parse(readFileSync(join("node_modules", pkg, "package.json"), "utf8")).version;
  const transport = new StdioClientTransport({ command: argv[0], args: argv.slice(1), env: { ...process.env, ...(env || {}) }, stderr: "ignore" });
  const client = new Client({ name: "troy-capture", version: "1.0.0" });
  try {
    await client.connect(transport);
    const tools = [];
    let cursor;
    do {
      const r = await client.listTools(cursor ? { cursor } : {});
      tools.push(...r.tools);
      cursor = r.nextCursor;
    } while (cursor);
    writeFileSync(join(out, name + ".json"), JSON.stringify({ server: name, package: pkg, version, tools }, null, 1) + "\n");
    console.log(`${name} ${pkg}@${version}: ${tools.length} tools`);
  } catch (e) {
    console.log(`${name} ${pkg}@${version}: FAILED ${e.message}`);
  } finally {
    await client.close().catch(() => {});
  }
}
process.exit(0);
