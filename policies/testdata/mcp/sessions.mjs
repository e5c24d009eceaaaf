// Records ordinary sessions with real MCP servers installed from npm: a user's tool calls
// and the servers' real answers, as troyctl mcp records them (a tools/list observation,
// then a tool_call step per call). Run where the packages of README.md are installed:
// node sessions.mjs OUTFILE
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = "/tmp/troy-mcp-project";
rmSync(root, { recursive: true, force: true });
mkdirSync(join(root, "src"), { recursive: true });
writeFileSync(join(root, "README.md"), "# Project\n\nA small service. Run `make test`.\n");
writeFileSync(join(root, "src", "main.go"), "package main\n\nfunc main() { println(\"hello\") }\n");
writeFileSync(join(root, ".env.example"), "DATABASE_URL=postgres://user:password@localhost:5432/app\nPORT=8080\n");
const bin = (p) => join("node_modules", ".bin", p);

async function record(name, server, argv, calls, env) {
  const transport = new StdioClientTransport({ command: argv[0], args: argv.slice(1), env: { ...process.env, ...(env || {}) }, stderr: "ignore" });
  const client = new Client({ name: "troy-capture", version: "1.0.0" });
  await client.connect(transport);
  const steps = [];
  const tools = (await client.listTools()).tools;
  steps.push({ type: "observation", description: "tools/list", input: {}, output: { tools }, metadata: { mcp_server: server, mcp_tools_changed: [] } });
  for (const [tool, args] of calls) {
    let output;
    try {
      output = await client.callTool({ name: tool, arguments: args });
    } catch (e) {
      output = { error: { code: e.code ?? -32603, message: e.message } };
    }
    steps.push({ type: "tool_call", description: tool, input: args, output, metadata: { mcp_server: server, mcp_tool: tool } });
  }
  await client.close();
  return { name, expect: [], trace: { trace_id: name, agent_name: "mcp-client", steps: steps.map((s, i) => ({ step_id: `s${i + 1}`, ...s })) } };
}

const f = (p) => join(root, p);
const sessions = [
  await record("filesystem-edit-project", "filesystem", [bin("mcp-server-filesystem"), root], [
    ["list_allowed_directories", {}],
    ["list_directory", { path: root }],
    ["read_text_file", { path: f("README.md") }],
    ["read_text_file", { path: f(".env.example") }],
    ["write_file", { path: f("NOTES.md"), content: "# Notes\n\n- set PORT in .env before running\n- see https://go.dev/doc/ for the toolchain\n" }],
    ["edit_file", { path: f("README.md"), edits: [{ oldText: "Run `make test`.", newText: "Run `make test`; notes in NOTES.md." }] }],
    ["create_directory", { path: f("docs") }],
    ["move_file", { source: f("NOTES.md"), destination: f("docs/NOTES.md") }],
    ["search_files", { path: root, pattern: "*.go" }],
    ["read_multiple_files", { paths: [f("src/main.go"), f("docs/NOTES.md")] }],
    ["get_file_info", { path: f("src/main.go") }],
    ["directory_tree", { path: root }],
    ["list_directory_with_sizes", { path: root }],
    ["read_text_file", { path: "/etc/hostname" }],
  ]),
  await record("memory-knowledge-graph", "memory", [bin("mcp-server-memory")], [
    ["create_entities", { entities: [{ name: "Ann", entityType: "person", observations: ["prefers short answers"] }, { name: "Troy", entityType: "project", observations: ["written in Go"] }] }],
    ["create_relations", { relations: [{ from: "Ann", to: "Troy", relationType: "maintains" }] }],
    ["add_observations", { observations: [{ entityName: "Troy", contents: ["audits agent traces"] }] }],
    ["search_nodes", { query: "Go" }],
    ["open_nodes", { names: ["Ann"] }],
    ["delete_observations", { deletions: [{ entityName: "Ann", observations: ["prefers short answers"] }] }],
    ["delete_relations", { relations: [{ from: "Ann", to: "Troy", relationType: "maintains" }] }],
    ["delete_entities", { entityNames: ["Ann"] }],
    ["read_graph", {}],
  ], { MEMORY_FILE_PATH: join(root, "memory.jsonl") }),
  await record("sequential-thinking-plan", "sequential-thinking", [bin("mcp-server-sequential-thinking")], [
    ["sequentialthinking", { thought: "The user wants a migration plan; first list the tables.", nextThoughtNeeded: true, thoughtNumber: 1, totalThoughts: 3 }],
    ["sequentialthinking", { thought: "Then order them by foreign keys.", nextThoughtNeeded: true, thoughtNumber: 2, totalThoughts: 3 }],
    ["sequentialthinking", { thought: "Finally write one migration per table and test it.", nextThoughtNeeded: false, thoughtNumber: 3, totalThoughts: 3 }],
  ]),
  await record("everything-tour", "everything", [bin("mcp-server-everything")], [
    ["echo", { message: "hello from the client" }],
    ["get-sum", { a: 2, b: 40 }],
    ["get-tiny-image", {}],
    ["get-annotated-message", { messageType: "error", includeImage: false }],
    ["get-structured-content", { location: "New York" }],
    ["get-resource-reference", { resourceType: "Text", resourceId: 2 }],
    ["get-resource-links", { count: 2 }],
    ["trigger-long-running-operation", { duration: 1, steps: 2 }],
  ]),
  await record("desktop-commander-build", "desktop-commander", [bin("desktop-commander")], [
    ["list_directory", { path: root }],
    ["read_file", { path: f("src/main.go") }],
    ["write_file", { path: f("src/util.go"), content: "package main\n\nfunc add(a, b int) int { return a + b }\n", mode: "rewrite" }],
    ["start_process", { command: "ls " + root, timeout_ms: 5000 }],
    ["get_file_info", { path: f("src/util.go") }],
  ]),
];
writeFileSync(process.argv[2], JSON.stringify(sessions, null, 1) + "\n");
for (const s of sessions) console.log(s.name, s.trace.steps.length, "steps");
process.exit(0);
