"""A NATS transport for the guard, on the standard library: request-reply to troyctl
serve's guard service (troy.guard.check.AGENT, .output.AGENT, .end.AGENT) over the NATS protocol, with
headers, so the service's errors come back as errors. Use it where NATS is reachable and
the HTTP gateway is not enabled: TroyGuard(client=NatsClient("nats://127.0.0.1:4222")).
A NATS credentials file (creds=, default TROY_CREDS; troyctl auth agent NAME writes one)
signs the server's nonce with Ed25519, which needs the `cryptography` package; without a
credential it connects anonymously (or with the URL's user and password), as a serve
started with --insecure-no-auth allows.
"""

import base64
import json
import os
import re
import socket
import threading
import urllib.parse
import uuid

from .client import TroyError, check_body


def token(agent):
    """The agent's subject token, as troy writes it: letters, digits, '-' and '_' stay,
    every other byte of its UTF-8 becomes ~ and two hex digits; the empty name is ~."""
    if not agent:
        return "~"
    out = []
    for b in agent.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_"):
            out.append(c)
        else:
            out.append("~%02x" % b)
    return "".join(out)


def read_creds(path):
    """The user JWT and nkey seed of a NATS credentials file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    jwt = re.search(r"-{3,}BEGIN NATS USER JWT-{3,}\s*\n\s*(\S+)", text)
    seed = re.search(r"-{3,}BEGIN USER NKEY SEED-{3,}\s*\n\s*(\S+)", text)
    if not jwt or not seed:
        raise ValueError(f"{path}: expected a NATS credentials file (a user JWT and an nkey seed)")
    return jwt.group(1), seed.group(1)


def inbox_prefix(jwt):
    """The one _INBOX.X the user may subscribe under, if its JWT allows only that."""
    payload = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    allow = claims.get("nats", {}).get("sub", {}).get("allow") or []
    if len(allow) == 1 and allow[0].startswith("_INBOX.") and allow[0].endswith(".>") and allow[0] != "_INBOX.>":
        return allow[0][:-2]
    return None


def sign_nonce(seed, nonce):
    """The server's nonce signed with the nkey seed: Ed25519, base64url without padding."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise TroyError(0, "unavailable", "a NATS credentials file needs the cryptography package (pip install cryptography)") from None
    raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
    key = Ed25519PrivateKey.from_private_bytes(raw[2:34])  # after the two prefix bytes, before the CRC
    return base64.urlsafe_b64encode(key.sign(nonce.encode())).rstrip(b"=").decode()


class NatsClient:
    """Speaks to the guard service over NATS; the same methods as client.Client (but
    report, which needs the HTTP gateway). servers defaults to TROY_NATS_URL."""

    def __init__(self, servers=None, timeout=5.0, creds=None):
        url = servers or os.environ.get("TROY_NATS_URL") or "nats://127.0.0.1:4222"
        url = url.split(",")[0].strip()
        u = urllib.parse.urlparse(url if "://" in url else "nats://" + url)
        self.host, self.port, self.timeout = u.hostname or "127.0.0.1", u.port or 4222, timeout
        self._user, self._password = u.username, u.password
        self._lock = threading.Lock()
        self._sock = None
        self._buf = b""
        self._jwt, self._seed = None, None
        creds = creds or os.environ.get("TROY_CREDS")
        prefix = "_INBOX"
        if creds:
            self._jwt, self._seed = read_creds(creds)
            prefix = inbox_prefix(self._jwt) or prefix
        self._inbox = prefix + "." + uuid.uuid4().hex
        self._n = 0

    # -- the protocol -------------------------------------------------------------------

    def _connect(self):
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._sock, self._buf = s, b""
        info = json.loads(self._readline()[len(b"INFO "):] or b"{}")
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "lang": "python-stdlib", "version": "0.1.0", "protocol": 1, "name": "troy-python"}
        if self._user:
            opts["user"], opts["pass"] = urllib.parse.unquote(self._user), urllib.parse.unquote(self._password or "")
        if self._jwt:
            opts["jwt"], opts["sig"] = self._jwt, sign_nonce(self._seed, info.get("nonce", ""))
        self._send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        self._expect_pong()
        self._send(f"SUB {self._inbox}.* 1\r\n".encode())

    def _send(self, data):
        self._sock.sendall(data)

    def _readline(self):
        while b"\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("NATS closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _readn(self, n):
        while len(self._buf) < n + 2:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("NATS closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n + 2:]
        return data

    def _expect_pong(self):
        while True:
            line = self._readline()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode(errors="replace"))

    def _request(self, subject, body):
        with self._lock:
            try:
                if self._sock is None:
                    self._connect()
                self._n += 1
                reply = f"{self._inbox}.{self._n}"
                payload = json.dumps(body).encode()
                self._send(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")
                while True:
                    line = self._readline()
                    if line == b"PING":
                        self._send(b"PONG\r\n")
                        continue
                    if line.startswith(b"-ERR"):
                        raise ConnectionError(line.decode(errors="replace"))
                    parts = line.split()
                    if not parts or parts[0] not in (b"MSG", b"HMSG"):
                        continue
                    if parts[0] == b"MSG":  # MSG subject sid [reply] size
                        data, headers = self._readn(int(parts[-1])), {}
                    else:  # HMSG subject sid [reply] hdr_size total_size
                        raw = self._readn(int(parts[-1]))
                        hsize = int(parts[-2])
                        headers, data = self._headers(raw[:hsize]), raw[hsize:]
                    if parts[1].decode() != reply:
                        continue  # the reply to an earlier request that timed out
                    return self._result(headers, data)
            except (OSError, ConnectionError) as e:
                self.close()
                raise TroyError(0, "unavailable", f"NATS at {self.host}:{self.port}: {e}") from None

    @staticmethod
    def _headers(raw):
        lines = raw.decode(errors="replace").split("\r\n")
        out = {"_status": lines[0][len("NATS/1.0"):].strip()}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
        return out

    @staticmethod
    def _result(headers, data):
        if headers.get("_status", "").startswith("503"):
            raise TroyError(503, "unavailable", "no guard service is running (troyctl serve)")
        code = headers.get("Nats-Service-Error-Code")
        if code:
            raise TroyError(int(code) if code.isdigit() else 0, "guard", headers.get("Nats-Service-Error", ""))
        return json.loads(data or b"null")

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # -- the guard's API ------------------------------------------------------------------

    def check(self, session, agent, action, input=None, metadata=None, step_type="tool_call",
              mode="enforce", agent_metadata=None, policy=None):
        return self._request("troy.guard.check." + token(agent), check_body(session, agent, action, input, metadata, step_type,
                                                            mode, agent_metadata, policy))

    def output(self, session, agent, step_id, output):
        return self._request("troy.guard.output." + token(agent), {"session": session, "agent": agent, "step_id": step_id, "output": output})

    def end(self, session, agent):
        return self._request("troy.guard.end." + token(agent), {"session": session, "agent": agent})

    def report(self, trace_id, agent, run=None):
        raise TroyError(0, "unsupported", "reports are read over the HTTP gateway (troy.client.Client)")
