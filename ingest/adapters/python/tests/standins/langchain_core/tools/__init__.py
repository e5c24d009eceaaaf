"""Stand-in for langchain_core.tools: tools made with @tool, run with invoke()."""

import inspect
import uuid

from ..callbacks.manager import CallbackManager, handle_event


class BaseTool:
    name = "tool"
    description = ""

    def _run(self, **kwargs):
        raise NotImplementedError

    def invoke(self, input, config=None, **kwargs):
        """Runs the tool with the callbacks of config, as LangChain does: on_tool_start
        before, on_tool_end or on_tool_error after."""
        handlers = CallbackManager.configure(config).handlers
        run_id = uuid.uuid4()
        tool_input = input if isinstance(input, dict) else {self._only_arg(): input}
        handle_event(handlers, "on_tool_start", {"name": self.name, "description": self.description}, str(input),
                     run_id=run_id, parent_run_id=None, tags=[], metadata={}, inputs=tool_input if isinstance(input, dict) else None)
        try:
            out = self._run(**tool_input)
        except Exception as e:
            handle_event(handlers, "on_tool_error", e, run_id=run_id, parent_run_id=None)
            raise
        handle_event(handlers, "on_tool_end", out, run_id=run_id, parent_run_id=None)
        return out

    def _only_arg(self):
        return next(iter(inspect.signature(self._run).parameters))


class StructuredTool(BaseTool):
    def __init__(self, name, description, func):
        self.name, self.description, self.func = name, description, func

    def _run(self, **kwargs):
        return self.func(**kwargs)

    def _only_arg(self):
        return next(iter(inspect.signature(self.func).parameters))


def tool(func):
    """@tool: a function as a tool named after it, described by its docstring."""
    return StructuredTool(func.__name__, inspect.getdoc(func) or "", func)


__all__ = ["BaseTool", "StructuredTool", "tool"]
