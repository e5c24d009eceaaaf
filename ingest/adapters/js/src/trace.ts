// Publishing a trace's steps to troy's steps stream (JetStream), for agents that record
// what they did rather than ask first. Each step is stored once even when a publish is
// retried (a de-duplication id per step).
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

export class TraceWriter {
  readonly run = randomBytes(8).toString("hex");
  private js: JetStreamClient;
  private steps = 0;

  constructor(nc: NatsConnection, readonly traceId: string, readonly agentName: string,
              readonly metadata: Record<string, unknown> = {}, readonly policy?: string) {
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
    await this.publish("step", step.step_id, { ...this.ref(), trace_metadata: this.metadata, seq: this.steps, step });
    this.steps++;
  }

  /** Attaches a step's output after it ran. */
  async output(stepId: string, output: Record<string, unknown>): Promise<void> {
    await this.publish("output", stepId, { ...this.ref(), step_id: stepId, output });
  }

  /** Completes the trace, so that troy scores and reports it. */
  async end(): Promise<void> {
    await this.publish("end", "", { ...this.ref(), steps: this.steps, reason: "end" });
  }
}
