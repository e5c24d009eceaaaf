// The guard: ask troy before an action runs, record what it returned, end the session.
//
// Where it asks, in this order: NATS request-reply to troyctl serve's guard service when the
// `servers` option is given; the HTTP gateway when `url` or TROY_URL is (a policy file or
// object is uploaded there by its hash); NATS again when TROY_NATS_URL is set and the policy
// is the server's (none given, or a revision hash); and otherwise a local guard,
// `troyctl guard --stdio` run as a child process (src/local.ts), which needs no server at
// all. `transport` forces one.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { HttpClient, tracePath } from "./http.js";
import { StdioGuard } from "./local.js";
import { subjectToken } from "./trace.js";

export type Mode = "enforce" | "monitor" | "dry-run";

export type Transport = "local" | "http" | "nats";

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

/** A policy file's JSON: policy_id, description, rules (rule_id, description, condition, severity, weight). */
export type PolicyObject = Record<string, unknown> & { rules: unknown[] };

/** The Python tool's adapter options, and where to ask. */
export interface GuardOptions {
  agentName?: string;
  agentMetadata?: Record<string, unknown>;
  mode?: Mode;
  session?: string;
  /**
   * The policy: a file, a bundled template name or a policy object; over NATS or HTTP also
   * a stored revision's hash (default the server's policy). The local guard needs one.
   */
  policy?: string | PolicyObject;
  /** Gives each step's metadata, which policies read (network zone, permission level...). */
  metadataFn?: (action: string, input: Record<string, unknown>, stepType: string) => Record<string, unknown> | undefined;
  /** Called with every decision that found violations. */
  onViolation?: (d: Decision) => void;
  /** When the guard cannot answer a check in enforce mode, allow the action (with a warning) instead of refusing it. */
  failOpen?: boolean;
  /** Where to ask (default: see the top of this file). */
  transport?: Transport;
  /** NATS servers of troyctl serve (default TROY_NATS_URL or nats://127.0.0.1:4222). */
  servers?: string | string[];
  /**
   * A NATS credentials file (default TROY_CREDS), such as one from `troyctl auth agent NAME`.
   * Requests then use the agent's own inbox prefix, the only replies its credential may read.
   */
  creds?: string;
  /** The HTTP gateway (default TROY_URL) and its bearer token (default TROY_TOKEN). */
  url?: string;
  token?: string;
  /** The local guard's troyctl binary (default TROY_BIN, else troyctl on PATH) and data directory. */
  troyBin?: string;
  dataDir?: string;
  /** Where the local guard's end() writes report.md and audit.json (default the data directory's reports/<session>/). */
  reportDir?: string;
  /** How long a request may wait for its answer (default 10 s; 5 s over NATS). */
  timeoutMs?: number;
}

/** What end() wrote: the local guard's report.md and audit.json. */
export interface EndResult {
  report?: string;
  audit?: string;
}

/** Thrown when the guard blocks an action in enforce mode. */
export class BlockedError extends Error {
  constructor(readonly decision: Decision, action: string, message?: string) {
    const reasons = [
      ...decision.violations.map((v) => v.rule_id),
      ...(decision.rule_errors ?? []).map((r) => `rule ${r.rule_id} could not be evaluated: ${r.error}`),
    ];
    super(message ?? `troy blocked ${action}: ${reasons.join(", ")}`);
    this.name = "BlockedError";
  }
}

/** The decision of a check the guard could not answer: one rule error, troy-guard, says why. */
function unavailable(mode: string, allowed: boolean, cause: Error): Decision {
  return { step_id: "", allowed, violations: [], risk_score: 0, mode, rule_errors: [{ rule_id: "troy-guard", error: `the guard is unavailable: ${cause.message}` }] };
}

/**
 * Thrown in enforce mode when the guard could not answer a check (unreachable, its child
 * process gone, a bad policy): the action is refused, as a block is (the guard fails
 * closed), unless failOpen. The cause is the failure.
 */
export class GuardUnavailableError extends BlockedError {
  constructor(action: string, mode: string, readonly cause: Error) {
    super(unavailable(mode, false, cause), action, `troy guard could not answer the check of ${action}, so it is refused: ${cause.message}`);
    this.name = "GuardUnavailableError";
  }
}

const warned = new Set<string>();

interface OpenAnswer {
  session_id: string;
  policy_id: string;
  rules: number;
}

const REVISION = /^[0-9a-f]{64}$/;

function pickTransport(o: GuardOptions): Transport {
  if (o.transport) return o.transport;
  if (o.servers) return "nats";
  if (o.url || process.env.TROY_URL) return "http";
  // A policy the guard can load runs locally (the child forwards its records to
  // TROY_NATS_URL); the server's default policy or a stored revision is asked over NATS.
  if (process.env.TROY_NATS_URL && (o.policy === undefined || (typeof o.policy === "string" && REVISION.test(o.policy)))) return "nats";
  return "local";
}

export class TroyGuard {
  readonly agentName: string;
  readonly mode: Mode;
  /** Where this guard asks. */
  readonly transport: Transport;
  /** The local guard's policy id and number of rules, once started. */
  policyId?: string;
  rules?: number;
  private currentSession: string;
  private nc?: Promise<NatsConnection>;
  private http?: HttpClient;
  private stdio?: StdioGuard;
  private opened?: Promise<OpenAnswer>;
  private ended?: EndResult;
  private readonly timeoutMs: number;

  constructor(readonly options: GuardOptions = {}) {
    this.agentName = options.agentName ?? "agent";
    this.mode = options.mode ?? "enforce";
    this.currentSession = options.session ?? `${this.agentName}-${Math.random().toString(16).slice(2, 14)}`;
    this.transport = pickTransport(options);
    this.timeoutMs = options.timeoutMs ?? (this.transport === "nats" ? 5000 : 10000);
    if (this.transport === "http") {
      const url = options.url ?? process.env.TROY_URL;
      if (!url) throw new Error("troy: the http transport needs url or TROY_URL");
      this.http = new HttpClient(url, options.token, this.timeoutMs, options.policy);
    } else if (this.transport === "local") {
      if (options.policy === undefined) {
        throw new Error("troy: without TROY_URL the guard runs locally and needs a policy: " +
          "{policy: \"policy.json\"} (a file, a bundled template name or a policy object); or set TROY_URL to ask a server");
      }
      this.stdio = new StdioGuard({ bin: options.troyBin, dataDir: options.dataDir, timeoutMs: this.timeoutMs });
    } else if (typeof options.policy === "object") {
      throw new Error("troy: over NATS the policy is a stored revision's hash; a policy object needs TROY_URL (which stores it) or the local guard");
    }
  }

  /** The session (trace id) the checks are recorded in. */
  get session(): string {
    return this.currentSession;
  }

  /** The local guard's process id, once started. */
  get pid(): number | undefined {
    return this.stdio?.pid;
  }

  /**
   * Starts the local guard and opens its session (checks do it when needed): a bad policy
   * or a missing troyctl shows here. Over NATS and HTTP it does nothing.
   */
  async start(): Promise<void> {
    await this.open();
  }

  private open(): Promise<OpenAnswer | undefined> {
    if (!this.stdio) return Promise.resolve(undefined);
    this.opened ??= (async () => {
      this.stdio!.start(this);
      const a = await this.stdio!.request({
        op: "open",
        policy: this.options.policy,
        agent_name: this.agentName,
        mode: this.mode,
        agent_metadata: this.options.agentMetadata ?? {},
        session_id: this.currentSession,
        ...(this.options.failOpen ? { fail: "open" } : {}),
      }, Math.max(this.timeoutMs, 30_000)) as unknown as OpenAnswer;
      this.currentSession = a.session_id ?? this.currentSession;
      this.policyId = a.policy_id;
      this.rules = a.rules;
      return a;
    })();
    return this.opened;
  }

  private local(): StdioGuard {
    if (!this.stdio) throw new Error(`troy: only the local guard does this; this guard asks over ${this.transport}`);
    return this.stdio;
  }

  private conn(): Promise<NatsConnection> {
    const creds = this.options.creds ?? process.env.TROY_CREDS;
    this.nc ??= connect({
      servers: this.options.servers ?? process.env.TROY_NATS_URL ?? "nats://127.0.0.1:4222",
      ...(creds ? { authenticator: credsAuthenticator(readFileSync(creds)), inboxPrefix: `_INBOX.${subjectToken(this.agentName)}` } : {}),
    });
    return this.nc;
  }

  private async natsRequest(subject: string, body: unknown): Promise<unknown> {
    const nc = await this.conn();
    const msg = await nc.request(subject, JSON.stringify(body), { timeout: this.timeoutMs });
    const code = msg.headers?.get("Nats-Service-Error-Code");
    if (code) {
      throw new Error(`troy guard: ${code} ${msg.headers?.get("Nats-Service-Error") ?? ""}`);
    }
    return msg.json();
  }

  private async ask(action: string, input: Record<string, unknown>, stepType: string, metadata: Record<string, unknown>): Promise<Decision> {
    if (this.stdio) {
      await this.open();
      const a = await this.stdio.request({ op: "check", action, input, metadata, step_type: stepType });
      return a.decision as Decision;
    }
    const body = {
      session: this.session,
      agent: this.agentName,
      agent_metadata: this.options.agentMetadata,
      mode: this.mode,
      policy: this.http ? await this.http.resolvePolicy() : this.options.policy,
      step: { action, type: stepType, input, metadata },
    };
    if (this.http) return (await this.http.call("POST", "/v1/guard/check", body)) as Decision;
    return (await this.natsRequest(`troy.guard.check.${subjectToken(this.agentName)}`, body)) as Decision;
  }

  /**
   * Asks whether the action may run and returns the decision; throws BlockedError when it is
   * blocked in enforce mode, and GuardUnavailableError (a BlockedError) when the guard cannot
   * answer in enforce mode, unless failOpen. In monitor and dry-run modes, or with failOpen,
   * a check that cannot be answered is allowed with a warning, its decision holding the rule
   * error troy-guard.
   */
  async check(action: string, input: Record<string, unknown> = {}, stepType = "tool_call", metadata?: Record<string, unknown>): Promise<Decision> {
    const meta = { ...metadata, ...this.options.metadataFn?.(action, input, stepType) };
    let d: Decision;
    try {
      d = await this.ask(action, input, stepType, meta);
      if (!d || typeof d !== "object" || typeof d.allowed !== "boolean") throw new Error(`the answer is not a decision: ${JSON.stringify(d)}`);
    } catch (err) {
      const cause = err instanceof Error ? err : new Error(String(err));
      if (this.mode === "enforce" && !this.options.failOpen) throw new GuardUnavailableError(action, this.mode, cause);
      process.emitWarning(`troy guard unavailable, allowing ${action}: ${cause.message}`);
      return unavailable(this.mode, true, cause);
    }
    d.violations ??= [];
    d.rule_errors ??= [];
    for (const m of d.missing_metadata ?? []) {
      const key = `${m.rule_id}\u0000${m.key}`;
      if (!warned.has(key)) {
        warned.add(key);
        process.emitWarning(`troy: rule ${m.rule_id} reads step metadata '${m.key}', which your steps do not carry; pass a metadataFn`);
      }
    }
    if (d.violations.length) this.options.onViolation?.(d);
    if (!d.allowed) throw new BlockedError(d, action);
    return d;
  }

  /** Records what an allowed action returned. */
  async recordOutput(stepId: string | undefined, output: Record<string, unknown>): Promise<void> {
    if (!stepId) return;
    if (this.stdio) {
      await this.open();
      await this.stdio.request({ op: "output", step_id: stepId, output });
    } else if (this.http) {
      await this.http.call("POST", tracePath(this.session, "output"), { agent: this.agentName, step_id: stepId, output });
    } else {
      await this.natsRequest(`troy.guard.output.${subjectToken(this.agentName)}`, { session: this.session, agent: this.agentName, step_id: stepId, output });
    }
  }

  /**
   * Ends the session: troy scores and reports it. The local guard writes report.md and
   * audit.json (their paths are returned) and its child process exits.
   */
  async end(): Promise<EndResult> {
    if (this.stdio) {
      await this.open();
      try {
        const a = await this.stdio.request({ op: "end", ...(this.options.reportDir ? { report_dir: this.options.reportDir } : {}) },
          Math.max(this.timeoutMs, 30_000));
        this.ended = { report: a.report as string, audit: a.audit as string };
        return this.ended;
      } finally {
        // The child exits after an end, answered or not; close waits for it.
        await this.stdio.close(`troy: the guard of session ${this.session} has ended; start a new TroyGuard for a new session`);
      }
    }
    if (this.http) {
      await this.http.call("POST", tracePath(this.session, "end"), { agent: this.agentName });
    } else {
      await this.natsRequest(`troy.guard.end.${subjectToken(this.agentName)}`, { session: this.session, agent: this.agentName });
    }
    return {};
  }

  /**
   * The audit of the ended session (audit.json's content): the local guard's file, or the
   * gateway's report (which fails until the report is written).
   */
  async report(): Promise<Record<string, unknown>> {
    if (this.stdio) {
      if (!this.ended?.audit) throw new Error("troy: the local guard writes its audit at end(); call end() first");
      return JSON.parse(await readFile(this.ended.audit, "utf8"));
    }
    if (this.http) {
      return (await this.http.call("GET", `${tracePath(this.session, "report")}?agent=${encodeURIComponent(this.agentName)}`)) as Record<string, unknown>;
    }
    throw new Error("troy: over NATS the report is written by troyctl serve under its reports directory");
  }

  /** The local guard's session so far, in the trace file format. */
  async trace(): Promise<Record<string, unknown>> {
    const g = this.local();
    await this.open();
    return (await g.request({ op: "trace" })).trace as Record<string, unknown>;
  }

  /** Starts a new session on the local guard, with an empty history; returns its id. */
  async reset(): Promise<string> {
    const g = this.local();
    await this.open();
    const a = await g.request({ op: "reset" });
    this.currentSession = a.session_id as string;
    return this.currentSession;
  }

  /** Lets go of the connection, or stops the local guard (which keeps what it recorded) without a report. */
  async close(): Promise<void> {
    if (this.stdio) await this.stdio.close(`troy: the guard of session ${this.session} was closed`);
    if (this.nc) await (await this.nc).close();
  }
}
