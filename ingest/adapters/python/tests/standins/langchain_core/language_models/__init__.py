"""Stand-in for langchain_core.language_models: FakeListLLM, LangChain's own scripted LLM."""

import uuid

from ..callbacks.manager import CallbackManager, handle_event
from ..outputs import Generation, LLMResult


class FakeListLLM:
    """Answers with its responses in turn."""

    def __init__(self, responses):
        self.responses, self.i = list(responses), 0

    def invoke(self, input, config=None, **kwargs):
        handlers = CallbackManager.configure(config).handlers
        run_id = uuid.uuid4()
        handle_event(handlers, "on_llm_start", {"name": "FakeListLLM", "id": ["langchain", "llms", "fake", "FakeListLLM"]},
                     [str(input)], run_id=run_id, parent_run_id=None, tags=[], metadata={})
        text = self.responses[self.i % len(self.responses)]
        self.i += 1
        handle_event(handlers, "on_llm_end", LLMResult(generations=[[Generation(text=text)]]), run_id=run_id,
                     parent_run_id=None)
        return text


__all__ = ["FakeListLLM"]
