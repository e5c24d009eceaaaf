"""A stand-in for crewai.tools (CrewAI cannot be installed here): the one method the
adapter patches, as CrewAI's BaseTool has it."""


class BaseTool:
    name = "tool"

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def run(self, *args, **kwargs):
        return self.fn(*args, **kwargs)
