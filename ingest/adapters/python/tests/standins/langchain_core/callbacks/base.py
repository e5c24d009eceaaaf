"""Stand-in for langchain_core.callbacks.base."""


class BaseCallbackHandler:
    """Base callback handler: every event is a no-op until overridden."""

    raise_error = False
    run_inline = False

    def on_llm_start(self, serialized, prompts, *, run_id, parent_run_id=None, tags=None, metadata=None, **kwargs):
        pass

    def on_llm_end(self, response, *, run_id, parent_run_id=None, **kwargs):
        pass

    def on_llm_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        pass

    def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, tags=None, metadata=None,
                      inputs=None, **kwargs):
        pass

    def on_tool_end(self, output, *, run_id, parent_run_id=None, **kwargs):
        pass

    def on_tool_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        pass

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        pass

    def on_chain_end(self, outputs, *, run_id, parent_run_id=None, **kwargs):
        pass
