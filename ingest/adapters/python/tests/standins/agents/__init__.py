"""Stand-in for the OpenAI Agents SDK's agents package (see ../README.md): Agent,
function_tool, AgentHooks, RunHooks, RunContextWrapper, and Runner.run_tool_calls, which
runs tool calls the way the SDK's Runner does once a model has asked for them."""

import inspect
import json


class RunContextWrapper:
    def __init__(self, context=None):
        self.context = context


class AgentHooks:
    async def on_start(self, context, agent):
        pass

    async def on_end(self, context, agent, output):
        pass

    async def on_handoff(self, context, agent, source):
        pass

    async def on_tool_start(self, context, agent, tool):
        pass

    async def on_tool_end(self, context, agent, tool, result):
        pass

    async def on_llm_start(self, context, agent, system_prompt, input_items):
        pass

    async def on_llm_end(self, context, agent, response):
        pass


class RunHooks(AgentHooks):
    pass


class FunctionTool:
    def __init__(self, name, description, func):
        self.name, self.description, self._func = name, description, func

    async def on_invoke_tool(self, ctx, input_json):
        out = self._func(**json.loads(input_json or "{}"))
        return await out if inspect.isawaitable(out) else out


def function_tool(func):
    return FunctionTool(func.__name__, inspect.getdoc(func) or "", func)


class Agent:
    def __init__(self, name, instructions=None, tools=None, hooks=None, model=None):
        self.name, self.instructions, self.tools, self.hooks, self.model = name, instructions, list(tools or []), hooks, model


class Runner:
    @staticmethod
    async def run_tool_calls(agent, calls, context=None):
        """Runs [(tool name, JSON arguments)] as the SDK's Runner does: the agent's hooks are
        awaited around the model call and each tool call; a hook's exception ends the run."""
        ctx = RunContextWrapper(context)
        hooks = agent.hooks or AgentHooks()
        await hooks.on_start(ctx, agent)
        await hooks.on_llm_start(ctx, agent, agent.instructions, [])
        await hooks.on_llm_end(ctx, agent, {"tool_calls": [name for name, _ in calls]})
        results = []
        for name, args in calls:
            tool = next(t for t in agent.tools if t.name == name)
            await hooks.on_tool_start(ctx, agent, tool)
            result = await tool.on_invoke_tool(ctx, args)
            await hooks.on_tool_end(ctx, agent, tool, result)
            results.append(result)
        await hooks.on_end(ctx, agent, results)
        return results


__all__ = ["Agent", "AgentHooks", "FunctionTool", "RunContextWrapper", "RunHooks", "Runner", "function_tool"]
