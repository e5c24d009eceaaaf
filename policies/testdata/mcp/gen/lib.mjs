// Helpers that write MCP sessions as troy traces, in the shape troyctl mcp records them.
export function session(name, expect, steps, request) {
  const s = steps.map((st, i) => ({ step_id: `s${i + 1}`, ...st }));
  const trace = { trace_id: name, agent_name: "mcp-client", steps: s };
  if (request) trace.metadata = { task: request };
  return { name, expect, trace };
}
export function list(server, tools, changed = []) {
  return {
    type: "observation", description: "tools/list", input: {},
    output: { tools: tools.map((t) => ({ inputSchema: { type: "object", properties: {} }, ...t })) },
    metadata: { mcp_server: server, mcp_tools_changed: changed },
  };
}
export function call(server, tool, input, output) {
  return {
    type: "tool_call", description: tool, input,
    output: typeof output === "string" ? { content: [{ type: "text", text: output }], isError: false } : output,
    metadata: { mcp_server: server, mcp_tool: tool },
  };
}
export function tool(name, description, properties = {}, extra = {}) {
  return { name, description, inputSchema: { type: "object", properties, required: Object.keys(properties) }, ...extra };
}
export const sshKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDx7Kq2VqJm8pWz3rL0Tn5hYcB1dE9fG4hI2jK6lM8nQAAAAJgV1Xq0FdV6\n-----END OPENSSH PRIVATE KEY-----\n";
export const awsCreds = "[default]\naws_access_key_id = AKIAQ3EGT5RKJ7XW2M4N\naws_secret_access_key = 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\nregion = eu-west-1\n";
export const dotEnv = "DATABASE_URL=postgres://app:Hx7vQ2pLr9@db.internal:5432/app\nSTRIPE_SECRET_KEY=sk_live_51Hq8ZtK2eR4vXp9LmN3bQ7w\nOPENAI_API_KEY=sk-proj-T4nK8wQ2zR6yL1pV9mX3cB7d\n";
