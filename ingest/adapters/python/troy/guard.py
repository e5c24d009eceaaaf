"""The guard: ask troy before an action runs, record what it returned, end the session."""

import functools
import uuid
import warnings

from .client import Client, TroyError

MODES = ("enforce", "monitor", "dry-run")

_warned = set()  # (rule, key) pairs already warned about in this process


class TroyGuard:
    """Checks an agent's actions against the policy of a running troy before they run.

    mode: "enforce" blocks a violating action (PermissionError), "monitor" and "dry-run"
    let it run. on_violation(decision) is called whenever an action violates a rule.
    metadata_fn(action, input, step_type) gives each step's metadata, which policies read
    (network zone, data classification, permission level...). Every checked step is
    recorded in the session, which troy audits like any trace once end() is called.
    """

    def __init__(self, policy=None, mode="enforce", agent_name="agent", on_violation=None,
                 agent_metadata=None, metadata_fn=None, session=None, url=None, token=None,
                 fail_open=False, client=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.policy, self.mode, self.agent_name = policy, mode, agent_name
        self.on_violation, self.agent_metadata, self.metadata_fn = on_violation, agent_metadata or {}, metadata_fn
        self.session = session or f"{agent_name}-{uuid.uuid4().hex[:12]}"
        self.fail_open = fail_open
        self.client = client or Client(url, token)
        self.decisions = []
        self._warned = set()

    def metadata(self, action, input, step_type):
        if self.metadata_fn is None:
            return {}
        return dict(self.metadata_fn(action, input, step_type) or {})

    def check(self, action, input=None, step_type="tool_call", metadata=None):
        """Asks whether the action may run. Returns the decision, a dict with the Python
        tool's fields (step_id, allowed, violations, risk_score, mode) and rule_errors: the
        rules that could not be evaluated for this action ({rule_id, error}), which block
        it in enforce mode unless the policy or serve says skip. Raises PermissionError when
        the action is blocked in enforce mode."""
        meta = dict(metadata or {})
        meta.update(self.metadata(action, input, step_type))
        try:
            d = self.client.check(self.session, self.agent_name, action, input if isinstance(input, dict) else ({"input": input} if input is not None else {}),
                                  meta, step_type, self.mode, self.agent_metadata, self.policy)
        except TroyError as e:
            if self.fail_open:
                warnings.warn(f"troy guard unavailable, allowing {action}: {e}")
                return {"step_id": None, "allowed": True, "violations": [], "risk_score": 0, "mode": self.mode,
                        "rule_errors": []}
            raise PermissionError(f"troy guard unavailable: {e}") from e
        self.decisions.append(d)
        for m in d.get("missing_metadata") or []:
            pair = (m.get("rule_id"), m.get("key"))
            if pair not in _warned:
                _warned.add(pair)
                warnings.warn(f"troy: rule {pair[0]} reads step metadata {pair[1]!r}, which your steps do not carry; "
                              "pass a metadata_fn that gives it", stacklevel=2)
        if d.get("violations") and self.on_violation is not None:
            self.on_violation(d)
        d.setdefault("rule_errors", [])
        if not d.get("allowed", False):
            reasons = [v.get("rule_id", "?") for v in d.get("violations", [])]
            # A rule that could not be evaluated blocks too (the guard fails closed).
            reasons += [f"rule {r.get('rule_id', '?')} could not be evaluated: {r.get('error', '')}" for r in d["rule_errors"]]
            raise PermissionError(f"troy blocked {action}: {', '.join(reasons)}")
        return d

    def record_output(self, step_id, output):
        """Records what an allowed action returned."""
        if step_id is None:
            return
        if not isinstance(output, dict):
            output = {"result": output if isinstance(output, (str, int, float, bool, list)) or output is None else str(output)}
        self.client.output(self.session, self.agent_name, step_id, output)

    def end(self):
        """Ends the session: troy scores and reports it."""
        self.client.end(self.session, self.agent_name)

    def report(self):
        """The audit of the ended session (raises TroyError until it is ready)."""
        return self.client.report(self.session, self.agent_name)


def guarded(guard, action=None, step_type="tool_call"):
    """Decorates a function so that it runs only when the guard allows it; its result is
    recorded as the step's output ({"result": value} or {"error": message})."""

    def wrap(fn):
        name = action or fn.__name__

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            inp = dict(kwargs)
            if args:
                inp["args"] = [a if isinstance(a, (str, int, float, bool)) or a is None else repr(a) for a in args]
            d = guard.check(name, inp, step_type)
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                guard.record_output(d.get("step_id"), {"error": str(e)})
                raise
            guard.record_output(d.get("step_id"), result)
            return result

        return inner

    return wrap
