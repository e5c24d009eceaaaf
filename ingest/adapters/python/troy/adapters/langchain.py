"""LangChain callback handler: checks each tool and LLM call before it runs and records
what it returned."""

try:
    from langchain_core.callbacks.base import BaseCallbackHandler
    from langchain_core.outputs import LLMResult  # noqa: F401 - the type of on_llm_end's response
except ImportError:
    raise ImportError("Install langchain-core to use the LangChain adapter: pip install 'troy[langchain]'")

from ..guard.core import TroyGuard, blocked_error
from ..models import StepType


class TroyHandler(BaseCallbackHandler):
    """LangChain callback handler that intercepts tool and LLM calls via TroyGuard. A
    blocked call raises PermissionError("Blocked by policy: [...]"), which LangChain
    re-raises (raise_error), so the tool does not run."""

    raise_error = True

    def __init__(self, policy=None, mode="enforce", agent_name="langchain-agent", on_violation=None,
                 agent_metadata=None, metadata_fn=None, *, guard=None, **guard_options):
        super().__init__()
        self._guard = guard or TroyGuard(policy=policy, agent_name=agent_name, mode=mode, on_violation=on_violation,
                                         agent_metadata=agent_metadata, **guard_options)
        self._metadata_fn = metadata_fn
        self._run_to_step = {}

    @property
    def guard(self):
        return self._guard

    def _check(self, action, input_data, step_type, run_id):
        metadata = self._metadata_fn(action, input_data, step_type) if self._metadata_fn else None
        decision = self._guard.check(action=action, input=input_data, metadata=metadata, step_type=step_type)
        self._run_to_step[run_id] = decision.step_id
        if not decision.allowed:
            raise blocked_error(decision)

    def on_tool_start(self, serialized, input_str, *, run_id=None, **kwargs):
        tool_name = (serialized or {}).get("name", "unknown_tool")
        input_data = kwargs.get("inputs") or {"input": input_str}
        if not isinstance(input_data, dict):
            input_data = {"input": input_data}
        self._check(tool_name, input_data, StepType.TOOL_CALL, run_id)

    def on_tool_end(self, output, *, run_id=None, **kwargs):
        step_id = self._run_to_step.pop(run_id, None)
        if step_id:
            self._guard.record_output(step_id, {"result": output if isinstance(output, str) else str(output)})

    def on_tool_error(self, error, *, run_id=None, **kwargs):
        step_id = self._run_to_step.pop(run_id, None)
        if step_id:
            self._guard.record_output(step_id, {"error": str(error)})

    def on_llm_start(self, serialized, prompts, *, run_id=None, **kwargs):
        serialized = serialized or {}
        ident = serialized.get("id")
        model_name = serialized.get("name", ident[-1] if ident else "unknown_llm")
        self._check(model_name, {"prompts": list(prompts)}, StepType.LLM_CALL, run_id)

    def on_llm_end(self, response, *, run_id=None, **kwargs):
        step_id = self._run_to_step.pop(run_id, None)
        if step_id:
            text = ""
            generations = getattr(response, "generations", None)
            if generations and generations[0]:
                text = generations[0][0].text
            self._guard.record_output(step_id, {"result": text})

    def on_llm_error(self, error, *, run_id=None, **kwargs):
        step_id = self._run_to_step.pop(run_id, None)
        if step_id:
            self._guard.record_output(step_id, {"error": str(error)})
