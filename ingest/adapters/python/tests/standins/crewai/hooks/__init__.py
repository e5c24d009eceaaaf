"""Stand-in for crewai.hooks: the global tool-call hooks."""

_before, _after = [], []


class ToolCallHookContext:
    def __init__(self, tool_name, tool_input, tool=None, agent=None, task=None, crew=None, tool_result=None):
        self.tool_name, self.tool_input, self.tool = tool_name, tool_input, tool
        self.agent, self.task, self.crew, self.tool_result = agent, task, crew, tool_result


def register_before_tool_call_hook(hook):
    _before.append(hook)


def register_after_tool_call_hook(hook):
    _after.append(hook)


def unregister_before_tool_call_hook(hook):
    if hook in _before:
        _before.remove(hook)
        return True
    return False


def unregister_after_tool_call_hook(hook):
    if hook in _after:
        _after.remove(hook)
        return True
    return False


def get_before_tool_call_hooks():
    return list(_before)


def get_after_tool_call_hooks():
    return list(_after)


def clear_all_tool_call_hooks():
    _before.clear()
    _after.clear()
