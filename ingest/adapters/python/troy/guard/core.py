"""TroyGuard: checks an agent's actions against a policy before they run.

Without TROY_URL the guard runs locally: a ``troyctl guard --stdio`` child evaluates the
checks with troy's engine and records every step (see troy.local). With TROY_URL (and
TROY_TOKEN), or a client given, it asks a troy deployment's guard instead; a policy given
as a file, a dict or PolicyRule objects is then uploaded to the deployment first, so the
same code runs against either.
"""

import functools
import hashlib
import json
import os
import uuid
import warnings
import weakref
from pathlib import Path

from ..client import Client, TroyError, jsonable
from ..models import Step, StepType, Trace
from ..policy.engine import PolicyRule, policy_document
from .decision import Decision

VALID_MODES = ("enforce", "monitor", "dry-run")

_warned = set()  # (rule, key) pairs already warned about in this process

_STEP_FIELDS = ("step_id", "type", "description", "input", "output", "metadata", "timestamp", "parent_step_id")


class TroyGuard:
    """Real-time guard that evaluates policy rules before tool calls execute.

    policy: a policy file (str or pathlib.Path), a bundled template name, a policy dict,
    or a list of PolicyRule. Modes:
        enforce  - a violating step is not allowed (decision.allowed is False)
        monitor  - every step is allowed; on_violation(decision) is called for violations
        dry-run  - every step is allowed, no callbacks
    check() returns a Decision and never raises for a verdict; the guarded decorator and
    the framework adapters raise PermissionError for a blocked step.

    troy's additions: metadata_fn(action, input, step_type) gives each step's metadata;
    end() ends the session and has it reported; fail_open allows steps (with a warning)
    when the guard cannot be reached, which otherwise blocks them; session, url, token,
    client and data_dir choose where the guard runs.
    """

    def __init__(self, policy=None, agent_name="agent", mode="enforce", on_violation=None, agent_metadata=None,
                 metadata_fn=None, *, session=None, url=None, token=None, fail_open=False, client=None, data_dir=None):
        if mode not in VALID_MODES:
            raise ValueError(f"Invalid mode '{mode}'. Must be one of {VALID_MODES}")
        self._agent_name = agent_name
        self._mode = mode
        self._on_violation = on_violation
        self._agent_metadata = dict(agent_metadata or {})
        self.metadata_fn = metadata_fn
        self.fail_open = fail_open
        self.decisions = []  # every decision of the session, in order
        url = url or os.environ.get("TROY_URL")
        if client is not None or url:
            self._backend = _Remote(policy, agent_name, mode, self._agent_metadata, session,
                                    client or Client(url, token), url, token)
        else:
            self._backend = _Local(policy, agent_name, mode, self._agent_metadata, session, fail_open, data_dir)
        self._finalizer = weakref.finalize(self, self._backend.close)

    @property
    def mode(self):
        return self._mode

    @property
    def agent_name(self):
        return self._agent_name

    @property
    def session(self):
        """The session's id: the trace id its steps are recorded under."""
        return self._backend.session

    @property
    def on_violation(self):
        return self._on_violation

    @property
    def _steps(self):
        try:
            return self.get_trace().steps
        except ValueError:
            return []

    def check(self, action, input=None, metadata=None, step_type=StepType.TOOL_CALL):
        """Evaluates a proposed step against the policy and returns a Decision. In enforce
        mode, the caller should check decision.allowed before executing the tool."""
        step_type = StepType(step_type)
        if input is None:
            input = {}
        elif not isinstance(input, dict):
            input = {"input": input}
        meta = {}
        if self.metadata_fn is not None:
            meta.update(self.metadata_fn(action, input, step_type) or {})
        meta.update(metadata or {})
        try:
            d = Decision.from_json(self._backend.check(action, input, meta, step_type.value))
        except (TroyError, OSError) as e:
            d = self._unavailable(action, e)
        self.decisions.append(d)
        for m in d.missing_metadata:
            pair = (m.get("rule_id"), m.get("key"))
            if pair not in _warned:
                _warned.add(pair)
                warnings.warn(f"Policy rule '{pair[0]}' checks metadata key '{pair[1]}' but the step has no such "
                              "metadata. If using an adapter, pass a metadata_fn that returns this key.",
                              UserWarning, stacklevel=2)
        if d.violations and self._mode == "monitor" and self._on_violation is not None:
            # The callback sees the verdict the step would have had in enforce mode.
            self._on_violation(d.model_copy(update={"allowed": False}))
        return d

    def _unavailable(self, action, err):
        """The decision when the guard cannot answer: blocked in enforce mode (the guard
        fails closed) unless fail_open, listed as a rule error either way."""
        allowed = self.fail_open or self._mode != "enforce"
        warnings.warn(f"troy guard unavailable, {'allowing' if allowed else 'blocking'} {action}: {err}", RuntimeWarning,
                      stacklevel=3)
        return Decision(step_id="", allowed=allowed, mode=self._mode,
                        rule_errors=[{"rule_id": "troy-guard", "error": f"the guard is unavailable: {err}"}])

    def record_output(self, step_id, output):
        """Attaches output to a previously checked step after it executes. KeyError for a
        step id the session does not have."""
        if not step_id:
            return  # a step the guard could not check
        if not isinstance(output, dict):
            output = {"result": output}
        self._backend.output(step_id, output)

    def get_trace(self):
        """Returns the accumulated trace for post-session audit (ValueError before any step)."""
        raw = self._backend.trace()
        steps = [Step(**{k: s[k] for k in _STEP_FIELDS if k in s and s[k] is not None}) for s in (raw or {}).get("steps") or []]
        if not steps:
            raise ValueError("No steps recorded yet")
        return Trace(trace_id=raw.get("trace_id") or str(uuid.uuid4()), agent_name=self._agent_name, steps=steps,
                     metadata=dict(self._agent_metadata))

    def reset(self):
        """Clears all accumulated state: a new session, with no history."""
        self.decisions.clear()
        self._backend.reset()

    def end(self, report_dir=None):
        """Ends the session: troy scores and reports it. Locally, report.md and audit.json
        are written (into report_dir, default the data dir's reports/<session>/) and their
        paths returned. A check after end() starts a new session."""
        return self._backend.end(report_dir)

    def report(self):
        """The audit (audit.json) of the ended session."""
        return self._backend.report()

    def close(self):
        """Stops the guard without ending the session (the local child is stopped after
        flushing its records). It is done when the guard is garbage-collected and at exit."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reasons(decision):
    out = [v.rule_description for v in decision.violations]
    out += [f"rule {r.get('rule_id', '?')} could not be evaluated: {r.get('error', '')}" for r in decision.rule_errors]
    return out


def blocked_error(decision):
    """The PermissionError for a blocked decision, worded as the Python tool words it."""
    return PermissionError(f"Blocked by policy: {_reasons(decision)}")


def guarded(guard, action=None, step_type=StepType.TOOL_CALL):
    """Decorator that wraps a function with guard check -> execute -> record_output.

    Usage:
        @guarded(guard)
        def send_email(to, body):
            ...

    Raises PermissionError if the step is blocked (enforce mode). action names the step
    (default the function's name).
    """

    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            decision = guard.check(action=action or fn.__name__, input={"args": list(args), "kwargs": kwargs},
                                   step_type=step_type)
            if not decision.allowed:
                raise blocked_error(decision)
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                guard.record_output(decision.step_id, {"error": str(e)})
                raise
            guard.record_output(decision.step_id, {"result": result})
            return result

        return wrapper

    return decorator


def _policy_source(policy):
    """policy as ("file", path), ("name", template name or hash), ("doc", dict) or (None, None)."""
    if policy is None:
        return None, None
    if isinstance(policy, Path):
        return "file", str(policy)
    if isinstance(policy, str):
        if os.path.isfile(policy):
            return "file", policy
        if os.sep in policy or policy.endswith(".json"):
            raise FileNotFoundError(f"policy file {policy}: no such file")
        return "name", policy
    if isinstance(policy, dict):
        return "doc", policy
    rules = list(policy)
    if not all(isinstance(r, (PolicyRule, dict)) for r in rules):
        raise TypeError("policy: expected a file path, a template name, a policy dict or a list of PolicyRule")
    return "doc", policy_document(rules)


class _Local:
    """The guard in a troyctl child."""

    def __init__(self, policy, agent_name, mode, agent_metadata, session, fail_open, data_dir):
        kind, value = _policy_source(policy)
        if kind is None:
            raise ValueError("policy is required to run the guard locally (a policy file, a template name, a policy "
                             "dict or a list of PolicyRule); set TROY_URL to use a troy server's default policy")
        self._open = {"policy": os.path.abspath(value) if kind == "file" else value, "agent_name": agent_name,
                      "mode": mode, "agent_metadata": agent_metadata, "fail": "open" if fail_open else "closed"}
        self._data_dir = data_dir
        self._proc = None
        self._ended_trace = None
        self._ended = None
        self.session = session
        self._start(session)

    def _start(self, session):
        from ..local import LocalGuardProcess

        self._proc = LocalGuardProcess(self._data_dir)
        req = dict(self._open)
        if session:
            req["session_id"] = session
        try:
            resp = self._proc.request("open", **req)
        except BaseException:
            self._proc.close()
            self._proc = None
            raise
        self.session = resp.get("session_id") or session
        self.policy_id, self.rules = resp.get("policy_id"), resp.get("rules")

    def _live(self):
        if self._proc is None:
            self._ended_trace = None
            self._start(None)
        return self._proc

    def check(self, action, input, metadata, step_type):
        return self._live().request("check", action=action, input=input, metadata=metadata,
                                    step_type=step_type)["decision"]

    def output(self, step_id, output):
        self._live().request("output", step_id=step_id, output=output)

    def trace(self):
        if self._proc is None:
            return self._ended_trace
        return self._proc.request("trace")["trace"]

    def reset(self):
        if self._proc is None:
            self._ended_trace = None
            return
        self.session = self._proc.request("reset").get("session_id") or self.session

    def end(self, report_dir):
        proc = self._live()
        self._ended_trace = proc.request("trace")["trace"]
        fields = {"report_dir": os.path.abspath(report_dir)} if report_dir else {}
        self._ended = proc.request("end", **fields)
        self.close()
        return {"report": self._ended.get("report"), "audit": self._ended.get("audit")}

    def report(self):
        if not self._ended:
            raise ValueError("the session has not ended: call end() first")
        with open(self._ended["audit"], encoding="utf-8") as f:
            return json.load(f)

    def close(self):
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.close()


class _Remote:
    """The guard of a troy deployment, over its HTTP gateway (or NATS)."""

    def __init__(self, policy, agent_name, mode, agent_metadata, session, client, url, token):
        self.client, self.agent_name, self.mode, self.agent_metadata = client, agent_name, mode, agent_metadata
        self.session = session or self._new_session()
        self.policy = self._upload(policy, url, token)
        self._steps = []  # what this process checked: the trace get_trace() answers
        self._ended = None  # the session end() ended, until the next check

    def _new_session(self):
        return f"{self.agent_name}-{uuid.uuid4().hex[:12]}"

    def _upload(self, policy, url, token):
        kind, value = _policy_source(policy)
        if kind is None:
            return None  # the deployment's default policy
        if kind == "name":
            return value  # a stored policy's hash or a bundled template's name: the deployment resolves both
        if kind == "file":
            body = Path(value).read_bytes()
        else:
            body = json.dumps(value, default=jsonable).encode()
        put = getattr(self.client, "put_policy", None) or Client(url, token).put_policy
        try:
            return put(hashlib.sha256(body).hexdigest(), body)["policy"]
        except TroyError as e:
            if e.status == 400:
                raise ValueError(e.message) from None  # the policy itself is wrong, as locally
            raise

    def check(self, action, input, metadata, step_type):
        if self._ended:
            self._ended, self._steps = None, []
        d = self.client.check(self.session, self.agent_name, action, input, metadata, step_type, self.mode,
                              self.agent_metadata, self.policy)
        if d.get("step_id"):
            self._steps.append({"step_id": d["step_id"], "type": step_type, "description": action, "input": input,
                                "output": {}, "metadata": metadata})
        return d

    def output(self, step_id, output):
        for s in self._steps:
            if s["step_id"] == step_id:
                self.client.output(self.session, self.agent_name, step_id, output)
                s["output"] = output
                return
        raise KeyError(f"Unknown step_id: {step_id}")

    def trace(self):
        return {"trace_id": self._ended or self.session, "steps": self._steps}

    def reset(self):
        self.session, self._steps, self._ended = self._new_session(), [], None

    def end(self, report_dir):
        out = self.client.end(self.session, self.agent_name)
        self._ended, self.session = self.session, self._new_session()
        return out

    def report(self):
        return self.client.report(self._ended or self.session, self.agent_name)

    def close(self):
        pass
