"""The local guard: a ``troyctl guard --stdio`` child process that evaluates checks with
troy's engine beside the agent, so that no server is needed.

The child speaks JSON lines: one request per line on its stdin, one response per line on
its stdout, in order. It records every checked step durably itself (and forwards them to a
deployment when one is configured), so nothing here is needed for durability. It exits
when its stdin closes, which happens when the guard ends, is garbage-collected, or the
process exits.
"""

import collections
import json
import os
import queue
import shutil
import subprocess
import threading

from .client import TroyError, jsonable

# Responses are bounded like the child's own input lines.
MAX_LINE = 16 << 20

# How long a request waits for its answer (seconds): a check is bounded by the policy's
# limits well within this; opening a policy and writing reports take longer. A child that
# does not answer in time is stopped, and the check is refused in enforce mode.
TIMEOUT = 10.0
SLOW_TIMEOUT = 30.0
SLOW_OPS = ("open", "end")


def find_troyctl():
    """The troyctl binary: TROY_BIN, else troyctl on PATH."""
    named = os.environ.get("TROY_BIN")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise FileNotFoundError(f"TROY_BIN={named}: not an executable file")
        return named
    found = shutil.which("troyctl")
    if not found:
        raise FileNotFoundError("troyctl is not on PATH: install troy's troyctl (or name it with TROY_BIN) to run the "
                                "guard locally, or set TROY_URL to use a troy server")
    return found


_ERRORS = {"KeyError": KeyError, "ValueError": ValueError, "PolicyError": ValueError, "TypeError": TypeError}


class ChildError(TroyError):
    """The child answered a request with an error of a kind Python has no exception for,
    or is gone."""


class LocalGuardProcess:
    """One ``troyctl guard --stdio`` child and its requests."""

    def __init__(self, data_dir=None, binary=None, timeout=None):
        cmd = [binary or find_troyctl(), "guard", "--stdio"]
        data_dir = data_dir or os.environ.get("TROY_DATA_DIR")
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      close_fds=True)
        self._lock = threading.Lock()
        self._next = 0
        # The child's log, kept short: its last lines explain a child that went away.
        self._log = collections.deque(maxlen=20)
        self._stderr = threading.Thread(target=self._drain, name="troyctl-guard-stderr", daemon=True)
        self._stderr.start()
        # Answers are read by a thread of their own, so that a request can wait with a deadline.
        self._timeout = TIMEOUT if timeout is None else timeout
        self._answers = queue.Queue()
        threading.Thread(target=self._read, name="troyctl-guard-stdout", daemon=True).start()

    def _read(self):
        try:
            while True:
                raw = self._proc.stdout.readline(MAX_LINE + 1)
                self._answers.put(raw)
                if not raw:
                    return
        except (OSError, ValueError):
            self._answers.put(b"")

    def _drain(self):
        for line in self._proc.stderr:
            self._log.append(line.decode("utf-8", "replace").rstrip())

    def log_tail(self):
        return "; ".join(self._log)

    @property
    def alive(self):
        return self._proc.poll() is None

    def request(self, op, **fields):
        """Sends one request and returns its response; raises the error the child
        answered with (KeyError, ValueError...), or ChildError when it is gone."""
        with self._lock:
            self._next += 1
            req = {"id": self._next, "op": op}
            req.update(fields)
            line = json.dumps(req, default=jsonable, allow_nan=True).encode() + b"\n"
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as e:
                raise self._gone(op, e) from None
            timeout = max(self._timeout, SLOW_TIMEOUT) if op in SLOW_OPS else self._timeout
            try:
                raw = self._answers.get(timeout=timeout)
            except queue.Empty:
                self._proc.kill()  # its answers can no longer be matched to requests
                raise self._gone(op, f"no answer within {timeout:g}s") from None
            if not raw:
                raise self._gone(op, "no answer")
            if len(raw) > MAX_LINE:
                self._proc.kill()  # the rest of that line would be read as the next answer
                raise ChildError(0, "too_large", f"troyctl guard: the answer to {op} is over {MAX_LINE} bytes")
            try:
                resp = json.loads(raw)
            except ValueError as e:
                raise ChildError(0, "bad_answer", f"troyctl guard answered {op} with a line that is not JSON: {e}") from None
            if resp.get("id") != self._next:
                raise ChildError(0, "bad_answer", f"troyctl guard answered request {resp.get('id')} to {op} "
                                 f"(request {self._next})")
        err = resp.get("error")
        if err:
            kind, msg = err.get("kind") or "Error", err.get("message") or ""
            raise _ERRORS.get(kind, lambda m: ChildError(0, kind, m))(msg)
        return resp

    def _gone(self, op, why):
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        return ChildError(0, "unavailable", f"troyctl guard stopped during {op} ({why}; exit status {code})"
                          + (f": {tail}" if tail else ""))

    def close(self, timeout=10.0):
        """Closes the child's stdin, which ends it once it has flushed its records, and
        waits for it (killing it after timeout seconds)."""
        proc = self._proc
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.join(timeout=1)
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass

