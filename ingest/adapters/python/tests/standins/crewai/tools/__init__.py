"""Stand-in for crewai.tools: BaseTool, @tool, and the hooks around a tool call."""

import inspect

from .. import hooks


class BaseTool:
    name = "tool"
    description = ""

    def _run(self, **kwargs):
        raise NotImplementedError

    def run(self, **kwargs):
        return self._run(**kwargs)


class Tool(BaseTool):
    def __init__(self, name, description, func):
        self.name, self.description, self.func = name, description, func

    def _run(self, **kwargs):
        return self.func(**kwargs)


def tool(name):
    def wrap(func):
        return Tool(name, inspect.getdoc(func) or "", func)

    return wrap


def use_tool(tool, tool_input, agent=None, task=None, crew=None):
    """What CrewAI does when an agent calls a tool: the before hooks run first, and one
    that returns False blocks the call; the after hooks run after, blocked calls too, and
    one that returns a string replaces the result."""
    ctx = hooks.ToolCallHookContext(tool.name, tool_input, tool, agent, task, crew)
    blocked = any(h(ctx) is False for h in hooks.get_before_tool_call_hooks())
    ctx.tool_result = f"Tool execution blocked by hook. Tool: {tool.name}" if blocked else str(tool.run(**ctx.tool_input))
    for h in hooks.get_after_tool_call_hooks():
        out = h(ctx)
        if isinstance(out, str):
            ctx.tool_result = out
    return ctx.tool_result


__all__ = ["BaseTool", "Tool", "tool", "use_tool"]
