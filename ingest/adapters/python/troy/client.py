"""HTTP transport to troy's gateway (troyctl serve --http)."""

import json
import os
import urllib.error
import urllib.parse
import urllib.request


class TroyError(Exception):
    """The gateway answered with an error, or did not answer."""

    def __init__(self, status, code, message):
        super().__init__(f"troy: {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def jsonable(v):
    """JSON's form of values it has none for: lists for sets and tuples, the value of an
    enum, a model's dump, else the value's text."""
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if isinstance(getattr(v, "value", None), str):
        return v.value
    return str(v)


def check_body(session, agent, action, input, metadata, step_type, mode, agent_metadata, policy):
    """The guard check request, the same over HTTP and NATS."""
    body = {"session": session, "agent": agent, "mode": mode,
            "step": {"action": action, "type": step_type, "input": input or {}, "metadata": metadata or {}}}
    if agent_metadata:
        body["agent_metadata"] = agent_metadata
    if policy:
        body["policy"] = policy
    return body


class Client:
    """Calls the gateway's API. url and token default to TROY_URL and TROY_TOKEN."""

    def __init__(self, url=None, token=None, timeout=10.0):
        self.url = (url or os.environ.get("TROY_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token or os.environ.get("TROY_TOKEN") or ""
        self.timeout = timeout

    def _call(self, method, path, body=None):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body, default=jsonable).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read()).get("error", {})
            except ValueError:
                err = {}
            raise TroyError(e.code, err.get("code", "http"), err.get("message", e.reason)) from None
        except (urllib.error.URLError, OSError) as e:
            raise TroyError(0, "unavailable", str(e)) from None

    def put_policy(self, sha256, body):
        """Stores a policy document (bytes whose SHA-256 is sha256) in the deployment;
        answers {"policy": hash to name it by, "policy_id", "rules"}."""
        return self._call("PUT", f"/v1/policies/{sha256}", body)

    def check(self, session, agent, action, input=None, metadata=None, step_type="tool_call",
              mode="enforce", agent_metadata=None, policy=None):
        return self._call("POST", "/v1/guard/check", check_body(session, agent, action, input, metadata, step_type,
                                                                mode, agent_metadata, policy))

    def output(self, session, agent, step_id, output):
        return self._call("POST", f"/v1/traces/{urllib.parse.quote(session, safe='')}/output",
                          {"agent": agent, "step_id": step_id, "output": output})

    def end(self, session, agent):
        return self._call("POST", f"/v1/traces/{urllib.parse.quote(session, safe='')}/end", {"agent": agent})

    def report(self, trace_id, agent, run=None):
        q = {"agent": agent}
        if run:
            q["run"] = run
        return self._call("GET", f"/v1/traces/{urllib.parse.quote(trace_id, safe='')}/report?" + urllib.parse.urlencode(q))
