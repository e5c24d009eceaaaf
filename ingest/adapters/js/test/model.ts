// A scripted OpenAI-compatible model that asks for the bash tool, then answers; and the
// metadata function that makes bash an admin tool, which examples/policy.json forbids.
import http from "node:http";
import { once } from "node:events";

export const admin = (action: string) => (action === "bash" ? { permission_level: "admin" } : { permission_level: "user" });

export async function scriptedModel(): Promise<{ url: string; close: () => void }> {
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
