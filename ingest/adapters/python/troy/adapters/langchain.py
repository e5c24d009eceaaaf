"""LangChain callback handler: checks each tool call before it runs (raising
PermissionError when blocked in enforce mode), records LLM calls and tool results, and
ends the session when the outermost chain ends."""

try:  # the real base class when LangChain is installed
    from langchain_core.callbacks import BaseCallbackHandler
except ImportError:  # pragma: no cover - depends on the environment
    BaseCallbackHandler = object

from ..guard import TroyGuard


class TroyHandler(BaseCallbackHandler):
    raise_error = True  # LangChain re-raises errors of handlers that ask for it: a block stops the tool

    def __init__(self, policy=None, mode="enforce", agent_name="langchain-agent", on_violation=None,
                 agent_metadata=None, metadata_fn=None, url=None, token=None, guard=None, **kwargs):
        if BaseCallbackHandler is not object:
            super().__init__()
        self.guard = guard or TroyGuard(policy=policy, mode=mode, agent_name=agent_name, on_violation=on_violation,
                                        agent_metadata=agent_metadata, metadata_fn=metadata_fn, url=url, token=token, **kwargs)
        self._steps = {}  # run id → step id of the checked tool call
        self._depth = 0

    def on_chain_start(self, serialized, inputs, **kwargs):
        self._depth += 1

    def on_chain_end(self, outputs, **kwargs):
        self._depth -= 1
        if self._depth <= 0:
            self.guard.end()

    def on_llm_start(self, serialized, prompts, **kwargs):
        name = (serialized or {}).get("name") or "llm"
        d = self.guard.check(name, {"prompts": list(prompts)}, "llm_call")
        self._steps[kwargs.get("run_id")] = d.get("step_id")


    def on_llm_end(self, response, **kwargs):
        step_id = self._steps.pop(kwargs.get("run_id"), None)
        text = getattr(response, "generations", None)
        self.guard.record_output(step_id, {"text": str(text) if text is not None else str(response)})

    def on_tool_start(self, serialized, input_str, **kwargs):
        name = (serialized or {}).get("name") or "tool"
        inp = kwargs.get("inputs") or {"input": input_str}
        d = self.guard.check(name, inp, "tool_call")
        self._steps[kwargs.get("run_id")] = d.get("step_id")

    def on_tool_end(self, output, **kwargs):
        self.guard.record_output(self._steps.pop(kwargs.get("run_id"), None), {"result": str(output)})

    def on_tool_error(self, error, **kwargs):
        self.guard.record_output(self._steps.pop(kwargs.get("run_id"), None), {"error": str(error)})
