"""Stand-in for langchain_core.callbacks.manager: how LangChain hands events to handlers."""

import logging

logger = logging.getLogger("langchain_core.callbacks.manager")


def handle_event(handlers, event_name, *args, **kwargs):
    """As LangChain's handle_event: a handler's exception is re-raised when the handler
    sets raise_error, else logged as a warning and the run goes on."""
    for handler in handlers:
        try:
            getattr(handler, event_name)(*args, **kwargs)
        except Exception as e:
            if handler.raise_error:
                raise
            logger.warning("Error in %s.%s callback: %r", type(handler).__name__, event_name, e)


class CallbackManager:
    def __init__(self, handlers):
        self.handlers = list(handlers or [])

    @classmethod
    def configure(cls, config):
        return cls((config or {}).get("callbacks"))
