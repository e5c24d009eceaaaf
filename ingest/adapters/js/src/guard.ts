// The guard: ask troy before an action runs, record what it returned, end the session.
// It speaks NATS request-reply to troyctl serve's guard service.
import { connect, type NatsConnection } from "@nats-io/transport-node";

export type Mode = "enforce" | "monitor" | "dry-run";

export interface Violation {
  rule_id: string;
  rule_description: string;
  step_id: string;
  severity: string;
  details: string;
}

/** A rule whose condition could not be evaluated for the action. */
export interface RuleError {
  rule_id: string;
  error: string;
}

export interface Decision {
  step_id: string;
  allowed: boolean;
  violations: Violation[];
  risk_score: number;
  mode: string;
  /** Rules that could not be evaluated: in enforce mode they block the action (fail closed) unless the policy or serve says skip. */
  rule_errors: RuleError[];
  missing_metadata?: { rule_id: string; key: string }[];
}

/** The Python tool's adapter options. */
export interface GuardOptions {
  agentName?: string;
  agentMetadata?: Record<string, unknown>;
  mode?: Mode;
  session?: string;
  policy?: string;
  /** Gives each step's metadata, which policies read (network zone, permission level...). */
  metadataFn?: (action: string, input: Record<string, unknown>, stepType: string) => Record<string, unknown> | undefined;
  /** Called with every decision that found violations. */
  onViolation?: (d: Decision) => void;
  /** NATS servers of troyctl serve (default TROY_NATS_URL or nats://127.0.0.1:4222). */
  servers?: string | string[];
  timeoutMs?: number;
}

/** Thrown when the guard blocks an action in enforce mode. */
export class BlockedError extends Error {
  constructor(readonly decision: Decision, action: string) {
    const reasons = [
      ...decision.violations.map((v) => v.rule_id),
      ...(decision.rule_errors ?? []).map((r) => `rule ${r.rule_id} could not be evaluated: ${r.error}`),
    ];
    super(`troy blocked ${action}: ${reasons.join(", ")}`);
    this.name = "BlockedError";
  }
}

const warned = new Set<string>();

export class TroyGuard {
  readonly session: string;
  readonly agentName: string;
  private nc?: Promise<NatsConnection>;

  constructor(readonly options: GuardOptions = {}) {
    this.agentName = options.agentName ?? "agent";
    this.session = options.session ?? `${this.agentName}-${Math.random().toString(16).slice(2, 14)}`;
  }

  private conn(): Promise<NatsConnection> {
    this.nc ??= connect({ servers: this.options.servers ?? process.env.TROY_NATS_URL ?? "nats://127.0.0.1:4222" });
    return this.nc;
  }

  private async request(subject: string, body: unknown): Promise<unknown> {
    const nc = await this.conn();
    const msg = await nc.request(subject, JSON.stringify(body), { timeout: this.options.timeoutMs ?? 5000 });
    const code = msg.headers?.get("Nats-Service-Error-Code");
    if (code) {
      throw new Error(`troy guard: ${code} ${msg.headers?.get("Nats-Service-Error") ?? ""}`);
    }
    return msg.json();
  }

  /** Asks whether the action may run; throws BlockedError when blocked in enforce mode. */
  async check(action: string, input: Record<string, unknown> = {}, stepType = "tool_call"): Promise<Decision> {
    const metadata = this.options.metadataFn?.(action, input, stepType) ?? {};
    const d = (await this.request("troy.guard.check", {
      session: this.session,
      agent: this.agentName,
      agent_metadata: this.options.agentMetadata,
      mode: this.options.mode ?? "enforce",
      policy: this.options.policy,
      step: { action, type: stepType, input, metadata },
    })) as Decision;
    d.rule_errors ??= [];
    for (const m of d.missing_metadata ?? []) {
      const key = `${m.rule_id}\u0000${m.key}`;
      if (!warned.has(key)) {
        warned.add(key);
        process.emitWarning(`troy: rule ${m.rule_id} reads step metadata '${m.key}', which your steps do not carry; pass a metadataFn`);
      }
    }
    if (d.violations?.length) this.options.onViolation?.(d);
    if (!d.allowed) throw new BlockedError(d, action);
    return d;
  }

  /** Records what an allowed action returned. */
  async recordOutput(stepId: string | undefined, output: Record<string, unknown>): Promise<void> {
    if (!stepId) return;
    await this.request("troy.guard.output", { session: this.session, agent: this.agentName, step_id: stepId, output });
  }

  /** Ends the session: troy scores and reports it. */
  async end(): Promise<void> {
    await this.request("troy.guard.end", { session: this.session, agent: this.agentName });
  }

  async close(): Promise<void> {
    if (this.nc) await (await this.nc).close();
  }
}
