"""CrewAI: enable_troy() registers global tool-call hooks that check every CrewAI tool
call before it runs (a blocked call does not run: CrewAI hands the agent a "blocked"
result) and record its result; disable_troy() unregisters them."""

try:
    from crewai.hooks import (
        register_after_tool_call_hook,
        register_before_tool_call_hook,
        unregister_after_tool_call_hook,
        unregister_before_tool_call_hook,
    )
except ImportError:
    raise ImportError("Install crewai to use the CrewAI adapter: pip install 'troy[crewai]'")

from ..guard.core import TroyGuard
from ..models import StepType

# The hooks registered, for disable_troy: CrewAI's registry is itself process-wide.
_state = {"before": None, "after": None, "guard": None, "step_ids": {}}


def enable_troy(policy=None, mode="enforce", agent_name="crewai-agent", on_violation=None, agent_metadata=None,
                metadata_fn=None, *, guard=None, **guard_options):
    """Enables troy's hooks for CrewAI tool calls. Returns the guard instance."""
    disable_troy()  # enabling twice keeps one pair of hooks
    g = guard or TroyGuard(policy=policy, agent_name=agent_name, mode=mode, on_violation=on_violation,
                           agent_metadata=agent_metadata, **guard_options)
    step_ids = {}

    def before_hook(context):
        tool_name = getattr(context, "tool_name", "unknown_tool")
        tool_input = getattr(context, "tool_input", {})
        if isinstance(tool_input, str):
            tool_input = {"input": tool_input}
        meta = metadata_fn(tool_name, tool_input, StepType.TOOL_CALL) if metadata_fn else None
        decision = g.check(action=tool_name, input=tool_input, metadata=meta, step_type=StepType.TOOL_CALL)
        step_ids[tool_name] = decision.step_id
        if not decision.allowed:
            return False
        return None

    def after_hook(context):
        tool_name = getattr(context, "tool_name", "unknown_tool")
        step_id = step_ids.pop(tool_name, None)
        if step_id:
            g.record_output(step_id, {"result": str(getattr(context, "tool_result", None))})
        return None

    register_before_tool_call_hook(before_hook)
    register_after_tool_call_hook(after_hook)
    _state.update(before=before_hook, after=after_hook, guard=g, step_ids=step_ids)
    return g


def disable_troy():
    """Unregisters troy's hooks from CrewAI."""
    if _state["before"] is not None:
        unregister_before_tool_call_hook(_state["before"])
    if _state["after"] is not None:
        unregister_after_tool_call_hook(_state["after"])
    _state.update(before=None, after=None, guard=None, step_ids={})
