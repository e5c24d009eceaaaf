// The HTTP transport to troy's gateway (troyctl serve --http), as the Python adapters use it:
// TROY_URL and TROY_TOKEN. A policy given as a file or an object is uploaded to the deployment
// (PUT /v1/policies/{the SHA-256 of its bytes}) and checks name it by the hash the answer
// gives, so code written for the local guard runs unchanged against a server.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";

/** The gateway answered with an error, or did not answer (status 0). */
export class TroyHttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(`troy: ${status} ${code}: ${message}`);
    this.name = "TroyHttpError";
  }
}

const HASH = /^[0-9a-f]{64}$/;

/**
 * The bytes to upload for a policy, or undefined when it is a name the server resolves
 * itself (a revision hash, or a bundled template's name).
 */
export function policyBody(policy: string | object): Buffer | undefined {
  if (typeof policy === "object") return Buffer.from(JSON.stringify(policy));
  if (HASH.test(policy) || !existsSync(policy)) return undefined;
  return readFileSync(policy);
}

export class HttpClient {
  readonly url: string;
  private readonly token: string;
  private policyRef?: Promise<string | undefined>;

  constructor(url: string, token: string | undefined, private readonly timeoutMs: number, private readonly policy?: string | object) {
    this.url = url.replace(/\/+$/, "");
    this.token = token ?? process.env.TROY_TOKEN ?? "";
  }

  async call(method: string, path: string, body?: unknown, raw?: Buffer): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, ...(body !== undefined || raw ? { "Content-Type": "application/json" } : {}) },
        body: raw ? new Uint8Array(raw) : body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const e = err as Error & { cause?: Error };
      throw new TroyHttpError(0, "unavailable", `${method} ${this.url}${path}: ${e.cause?.message ?? e.message}`);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      if (res.ok) throw new TroyHttpError(res.status, "bad_answer", `${method} ${path}: the answer is not JSON: ${text.slice(0, 200)}`);
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
      throw new TroyHttpError(res.status, err?.code ?? "http", err?.message ?? (text.slice(0, 200) || res.statusText));
    }
    return json;
  }

  /** The policy to name in checks: its hash once uploaded, or the name given. */
  resolvePolicy(): Promise<string | undefined> {
    this.policyRef ??= (async () => {
      if (this.policy === undefined) return undefined;
      const body = policyBody(this.policy);
      if (!body) return this.policy as string;
      const hash = createHash("sha256").update(body).digest("hex");
      // The answer names the policy by the hash of its stored form, which checks must use.
      const stored = (await this.call("PUT", `/v1/policies/${hash}`, undefined, body)) as { policy?: string } | null;
      if (typeof stored?.policy !== "string" || !stored.policy) {
        throw new TroyHttpError(200, "bad_answer", `PUT /v1/policies/${hash}: the answer names no policy: ${JSON.stringify(stored)}`);
      }
      return stored.policy;
    })();
    // A failed upload is tried again by the next check rather than remembered.
    this.policyRef.catch(() => (this.policyRef = undefined));
    return this.policyRef;
  }
}

export function tracePath(session: string, what: string): string {
  return `/v1/traces/${encodeURIComponent(session)}/${what}`;
}
