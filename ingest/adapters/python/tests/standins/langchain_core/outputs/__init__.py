"""Stand-in for langchain_core.outputs."""


class Generation:
    def __init__(self, text="", generation_info=None):
        self.text, self.generation_info = text, generation_info


class LLMResult:
    def __init__(self, generations, llm_output=None):
        self.generations, self.llm_output = generations, llm_output


__all__ = ["Generation", "LLMResult"]
