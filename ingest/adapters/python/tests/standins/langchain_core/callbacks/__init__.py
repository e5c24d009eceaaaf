from .base import BaseCallbackHandler
from .manager import CallbackManager

__all__ = ["BaseCallbackHandler", "CallbackManager"]
