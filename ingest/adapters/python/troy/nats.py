"""A NATS transport for the guard, on the standard library: request-reply to troyctl
serve's guard service (troy.guard.check.AGENT, .output.AGENT, .end.AGENT) over the NATS protocol, with
headers, so the service's errors come back as errors. Use it where NATS is reachable and
the HTTP gateway is not enabled: TroyGuard(client=NatsClient("nats://127.0.0.1:4222")).
It brings no NATS credentials (user and password in the URL at most), so a serve it talks
to runs with --insecure-no-auth; with authentication on, use the HTTP gateway.
"""

import json
import os
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


class NatsClient:
    """Speaks to the guard service over NATS; the same methods as client.Client (but
    report, which needs the HTTP gateway). servers defaults to TROY_NATS_URL."""

    def __init__(self, servers=None, timeout=5.0):
        url = servers or os.environ.get("TROY_NATS_URL") or "nats://127.0.0.1:4222"
        url = url.split(",")[0].strip()
        u = urllib.parse.urlparse(url if "://" in url else "nats://" + url)
        self.host, self.port, self.timeout = u.hostname or "127.0.0.1", u.port or 4222, timeout
        self._user, self._password = u.username, u.password
        self._lock = threading.Lock()
        self._sock = None
        self._buf = b""
        self._inbox = "_INBOX." + uuid.uuid4().hex
        self._n = 0

    # -- the protocol -------------------------------------------------------------------

    def _connect(self):
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._sock, self._buf = s, b""
        self._readline()  # INFO {...}
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "lang": "python-stdlib", "version": "0.1.0", "protocol": 1, "name": "troy-python"}
        if self._user:
            opts["user"], opts["pass"] = urllib.parse.unquote(self._user), urllib.parse.unquote(self._password or "")
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
