// The local guard: `troyctl guard --stdio` as a child process, spoken to in JSON lines (one
// request per line on its stdin, one answer per line on its stdout, in request order). The
// child evaluates the policy in the agent's machine and records every checked step durably
// itself, so nothing but the child is needed.
//
// The child never keeps Node running: its pipes are unref'd, so only a request in flight
// (through its timeout timer) holds the event loop; it is killed when Node exits and its
// stdin closed when its guard is garbage-collected.
import { spawn, type ChildProcess } from "node:child_process";

/** The longest line the child may answer with, as it bounds the lines it reads. */
export const MAX_LINE_BYTES = 16 << 20;

/** An answer of the child that is an error: kind is ValueError, KeyError, PolicyError... */
export class LocalGuardError extends Error {
  constructor(readonly kind: string, message: string) {
    super(`troy local guard: ${kind}: ${message}`);
    this.name = "LocalGuardError";
  }
}

export interface StdioOptions {
  /** The troyctl binary: default TROY_BIN, else troyctl on PATH. */
  bin?: string;
  /** The child's --data-dir (default troyctl's). */
  dataDir?: string;
  /** How long one request may wait for its answer. */
  timeoutMs: number;
}

type Answer = Record<string, unknown> & { id: number | null; error?: { kind?: string; message?: string } };

interface Pending {
  resolve: (a: Answer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

// Children alive in this process, killed when it exits: an agent that forgets end() must
// not leave a child behind. One exit listener serves them all.
const alive = new Set<ChildProcess>();
let exitHook = false;

function killAlive(): void {
  for (const c of alive) c.kill();
}

// A guard collected without end() closes its child's stdin: the child flushes and exits.
const collected = new FinalizationRegistry<ChildProcess>((c) => c.stdin?.end());

function unref(stream: unknown): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}

/** One `troyctl guard --stdio` child; requests are sent one at a time. */
export class StdioGuard {
  readonly bin: string;
  private child?: ChildProcess;
  private dead?: Error;
  private nextId = 0;
  private pending = new Map<number, Pending>();
  private queue: Promise<unknown> = Promise.resolve();
  private stderrTail: string[] = [];
  private exited?: Promise<void>;

  constructor(private readonly options: StdioOptions) {
    this.bin = options.bin || process.env.TROY_BIN || "troyctl";
  }

  /** The child's process id, once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the child; owner is the object whose collection closes it. */
  start(owner: object): void {
    if (this.child || this.dead) return;
    const args = ["guard", "--stdio"];
    if (this.options.dataDir) args.push("--data-dir", this.options.dataDir);
    const child = spawn(this.bin, args, { stdio: ["pipe", "pipe", "pipe"], windowsHide: true });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once("close", () => resolve());
      child.once("error", () => child.pid === undefined && resolve()); // it never started
    });
    child.once("error", (err: NodeJS.ErrnoException) => {
      const why = err.code === "ENOENT"
        ? `${this.bin} was not found (put troyctl on PATH, e.g. go install ./cmd/troyctl, or name it with TROY_BIN)`
        : err.message;
      this.fail(new Error(`troy: cannot start the local guard: ${why}`));
    });
    child.once("exit", (code, signal) => {
      alive.delete(child);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const tail = this.stderrTail.join("\n").trim();
      this.fail(new Error(`troy: the local guard (${this.bin} guard --stdio, pid ${child.pid}) ${how}${tail ? `: ${tail}` : ""}`));
    });
    // A write to a child that died fails with EPIPE; the exit above tells the callers.
    child.stdin!.on("error", () => {});
    this.readLines(child);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => {
      this.stderrTail.push(...s.split("\n").filter((l) => l.trim() !== ""));
      this.stderrTail.splice(0, Math.max(0, this.stderrTail.length - 5)); // the last lines say why it stopped
    });
    for (const s of [child.stdin, child.stdout, child.stderr]) unref(s);
    child.unref();
    alive.add(child);
    if (!exitHook) {
      exitHook = true;
      process.once("exit", killAlive);
    }
    collected.register(owner, child, this);
  }

  private readLines(child: ChildProcess): void {
    let buf = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => {
      buf += s;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() !== "") this.answer(line);
      }
      if (buf.length > MAX_LINE_BYTES) {
        this.fail(new Error(`troy: the local guard wrote a line over ${MAX_LINE_BYTES} bytes`));
        child.kill();
      }
    });
  }

  private answer(line: string): void {
    let a: Answer;
    try {
      a = JSON.parse(line);
    } catch {
      this.fail(new Error(`troy: the local guard answered a line that is not JSON: ${line.slice(0, 200)}`));
      this.child?.kill();
      return;
    }
    const p = typeof a?.id === "number" ? this.pending.get(a.id) : undefined;
    if (!p) return; // the answer to a request that timed out, or to a malformed line
    this.pending.delete(a.id as number);
    clearTimeout(p.timer);
    if (a.error) p.reject(new LocalGuardError(a.error.kind ?? "Error", a.error.message ?? JSON.stringify(a.error)));
    else p.resolve(a);
  }

  private fail(err: Error): void {
    this.dead ??= err;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(this.dead);
    }
    if (this.child) collected.unregister(this);
  }

  /** Sends a request once the ones before it are answered, and waits for its answer. */
  request(body: Record<string, unknown>, timeoutMs = this.options.timeoutMs): Promise<Answer> {
    const run = this.queue.then(() => this.send(body, timeoutMs));
    this.queue = run.catch(() => {});
    return run;
  }

  private send(body: Record<string, unknown>, timeoutMs: number): Promise<Answer> {
    if (this.dead) return Promise.reject(this.dead);
    const child = this.child;
    if (!child) return Promise.reject(new Error("troy: the local guard was not started"));
    const id = ++this.nextId;
    return new Promise<Answer>((resolve, reject) => {
      // The timer is the one handle that keeps Node running while an answer is awaited.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`troy: the local guard did not answer ${String(body.op)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      child.stdin!.write(JSON.stringify({ id, ...body }) + "\n");
    });
  }

  /**
   * Closes the child's stdin (it flushes and exits) and waits up to timeoutMs for it to
   * exit, killing it after that. Later requests fail with reason.
   */
  async close(reason: string, timeoutMs = this.options.timeoutMs): Promise<void> {
    const child = this.child;
    this.dead ??= new Error(reason);
    if (!child || !this.exited) return;
    collected.unregister(this);
    child.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
    const killed = await Promise.race([this.exited.then(() => false), late]);
    clearTimeout(timer);
    if (killed) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }
}
