// Publishing a trace's steps to troy's steps stream (JetStream), for agents that record
// what they did rather than ask first. Each step is stored once even when a publish is
// retried (a de-duplication id per step). Ids follow troy's rules (checkId).
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { randomBytes } from "node:crypto";

export interface Step {
  step_id: string;
  type: "llm_call" | "tool_call" | "decision" | "observation";
  description?: string;
  input?: Record<string, unknown>;
  output?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  timestamp?: string | null;
  parent_step_id?: string | null;
}

// subjectToken encodes an id as one subject token, as troy does: letters, digits, '-'
// and '_' stay, every other byte becomes ~ and two hex digits, and "" is "~".
export function subjectToken(id: string): string {
  if (id === "") return "~";
  let out = "";
  for (const b of Buffer.from(id, "utf8")) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_-]/.test(c) ? c : "~" + b.toString(16).padStart(2, "0");
  }
  return out;
}

/** The longest id troy takes, in bytes of UTF-8. */
export const MAX_ID_LENGTH = 256;

/**
 * checkId throws a RangeError when an id breaks troy's rules: at most 256 bytes of UTF-8
 * and no control characters. troy refuses such ids; a subject made of a much longer one
 * would cost the connection.
 */
export function checkId(name: string, id: string): void {
  const n = Buffer.byteLength(id, "utf8");
  if (n > MAX_ID_LENGTH) throw new RangeError(`${name}: ${n} bytes long, over the ${MAX_ID_LENGTH}-byte limit for ids`);
  if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) throw new RangeError(`${name}: holds a control character; ids are printable text`);
}

export class TraceWriter {
  readonly run = randomBytes(8).toString("hex");
  private js: JetStreamClient;
  private steps = 0;

  constructor(nc: NatsConnection, readonly traceId: string, readonly agentName: string,
              readonly metadata: Record<string, unknown> = {}, readonly policy?: string) {
    checkId("trace_id", traceId);
    checkId("agent_name", agentName);
    this.js = jetstream(nc);
  }

  private get subject(): string {
    return `troy.steps.${subjectToken(this.agentName)}.${subjectToken(this.traceId)}`;
  }

  private ref() {
    return { trace_id: this.traceId, agent_name: this.agentName, policy: this.policy, run: this.run };
  }

  private async publish(kind: string, part: string, event: unknown): Promise<void> {
    const id = [kind, subjectToken(this.run), subjectToken(this.traceId), subjectToken(part)].join("|");
    const headers = (await import("@nats-io/transport-node")).headers();
    headers.set("Troy-Kind", kind);
    await this.js.publish(this.subject, JSON.stringify(event), { msgID: id, headers });
  }

  /** Sends the next step; steps must be sent in order. */
  async step(step: Step): Promise<void> {
    checkId("step_id", step.step_id);
    // De-duplicated by position, as troy does: a trace may repeat a step id.
    await this.publish("step", String(this.steps), { ...this.ref(), trace_metadata: this.metadata, seq: this.steps, step });
    this.steps++;
  }

  /** Attaches a step's output after it ran. */
  async output(stepId: string, output: Record<string, unknown>): Promise<void> {
    checkId("step_id", stepId);
    await this.publish("output", stepId, { ...this.ref(), step_id: stepId, output });
  }

  /** Completes the trace, so that troy scores and reports it. */
  async end(): Promise<void> {
    await this.publish("end", "", { ...this.ref(), steps: this.steps, reason: "end" });
  }
}
