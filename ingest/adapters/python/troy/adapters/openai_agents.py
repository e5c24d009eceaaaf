"""OpenAI Agents SDK run hooks: checks each tool call before it runs (raising
PermissionError when blocked in enforce mode, which stops the run), records tool results,
and ends the session when the agent finishes."""

try:  # the real base class when the SDK is installed
    from agents import RunHooks
except ImportError:  # pragma: no cover - depends on the environment
    RunHooks = object

from ..guard import TroyGuard


def _name(tool):
    return getattr(tool, "name", None) or type(tool).__name__


class TroyHooks(RunHooks):
    def __init__(self, policy=None, mode="enforce", agent_name=None, on_violation=None,
                 agent_metadata=None, metadata_fn=None, url=None, token=None, guard=None, **kwargs):
        self.guard = guard or TroyGuard(policy=policy, mode=mode, agent_name=agent_name or "openai-agent", on_violation=on_violation,
                                        agent_metadata=agent_metadata, metadata_fn=metadata_fn, url=url, token=token, **kwargs)
        self._steps = {}

    async def on_tool_start(self, context, agent, tool):
        d = self.guard.check(_name(tool), {"agent": getattr(agent, "name", "")}, "tool_call")
        self._steps[_name(tool)] = d.get("step_id")

    async def on_tool_end(self, context, agent, tool, result):
        self.guard.record_output(self._steps.pop(_name(tool), None), {"result": str(result)})

    async def on_agent_end(self, context, agent, output):
        self.guard.end()
