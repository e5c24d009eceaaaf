"""OpenAI Agents SDK hooks: check each tool and LLM call of an agent before it runs and
record what it returned."""

try:
    from agents import AgentHooks
except ImportError:
    raise ImportError("Install openai-agents to use the OpenAI Agents adapter: pip install 'troy[openai-agents]'")

from ..guard.core import TroyGuard, blocked_error
from ..models import StepType


class TroyHooks(AgentHooks):
    """Agent hooks (Agent(..., hooks=TroyHooks(...))) that intercept tool and LLM calls via
    TroyGuard. A blocked call raises PermissionError("Blocked by policy: [...]"), which
    stops the run."""

    def __init__(self, policy=None, mode="enforce", agent_name="openai-agent", on_violation=None,
                 agent_metadata=None, metadata_fn=None, *, guard=None, **guard_options):
        self._guard = guard or TroyGuard(policy=policy, agent_name=agent_name, mode=mode, on_violation=on_violation,
                                         agent_metadata=agent_metadata, **guard_options)
        self._metadata_fn = metadata_fn
        self._tool_step_ids = {}

    @property
    def guard(self):
        return self._guard

    def _check(self, action, input_data, step_type, key):
        metadata = self._metadata_fn(action, input_data, step_type) if self._metadata_fn else None
        decision = self._guard.check(action=action, input=input_data, metadata=metadata, step_type=step_type)
        self._tool_step_ids[key] = decision.step_id
        if not decision.allowed:
            raise blocked_error(decision)

    async def on_tool_start(self, context, agent, tool):
        tool_name = getattr(tool, "name", str(tool))
        self._check(tool_name, {"tool": tool_name}, StepType.TOOL_CALL, tool_name)

    async def on_tool_end(self, context, agent, tool, result):
        tool_name = getattr(tool, "name", str(tool))
        step_id = self._tool_step_ids.pop(tool_name, None)
        if step_id:
            self._guard.record_output(step_id, {"result": str(result)})

    async def on_llm_start(self, context, agent, system_prompt=None, input_items=None):
        agent_name = getattr(agent, "name", "unknown_agent")
        self._check(agent_name, {"system_prompt": system_prompt or "", "input_items": str(input_items or [])},
                    StepType.LLM_CALL, "__llm__")

    async def on_llm_end(self, context, agent, response):
        step_id = self._tool_step_ids.pop("__llm__", None)
        if step_id:
            self._guard.record_output(step_id, {"result": str(response)})
