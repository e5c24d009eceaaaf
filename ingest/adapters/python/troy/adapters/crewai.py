"""CrewAI: enable_troy() makes every CrewAI tool ask troy before it runs (raising
PermissionError when blocked in enforce mode) and record its result; disable_troy()
undoes it."""

from ..guard import TroyGuard

_state = {}


def _base_tool():
    from crewai.tools import BaseTool  # imported when enabled: CrewAI is optional

    return BaseTool


def enable_troy(policy=None, mode="enforce", agent_name="crewai-agent", on_violation=None,
                agent_metadata=None, metadata_fn=None, url=None, token=None, guard=None, **kwargs):
    """Guards every CrewAI tool; returns the guard (call guard.end() when the crew is done)."""
    g = guard or TroyGuard(policy=policy, mode=mode, agent_name=agent_name, on_violation=on_violation,
                           agent_metadata=agent_metadata, metadata_fn=metadata_fn, url=url, token=token, **kwargs)
    tool = _base_tool()
    if "run" not in _state:
        _state["run"] = tool.run
    original = _state["run"]

    def run(self, *args, **kw):
        inp = dict(kw)
        if args:
            inp["args"] = [a if isinstance(a, (str, int, float, bool)) else repr(a) for a in args]
        d = g.check(getattr(self, "name", type(self).__name__), inp, "tool_call")
        try:
            result = original(self, *args, **kw)
        except Exception as e:
            g.record_output(d.get("step_id"), {"error": str(e)})
            raise
        g.record_output(d.get("step_id"), {"result": str(result)})
        return result

    tool.run = run
    _state["guard"] = g
    return g


def disable_troy():
    """Stops guarding CrewAI tools."""
    if "run" in _state:
        _base_tool().run = _state.pop("run")
    _state.pop("guard", None)
