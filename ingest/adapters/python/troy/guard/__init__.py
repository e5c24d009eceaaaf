"""Real-time interception SDK for agent tool calls."""

from .core import TroyGuard, guarded
from .decision import Decision

__all__ = ["TroyGuard", "Decision", "guarded"]
