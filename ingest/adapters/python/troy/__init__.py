"""troy: audit what AI agents do, and guard their actions before they run.

The modules and names are those of the Python tool troy grew from, so code written for it
runs unchanged:

    from troy.guard import TroyGuard, Decision, guarded
    from troy.models import StepType, Step, Trace, Violation
    from troy.policy.engine import PolicyRule, load_policy
    from troy.adapters.langchain import TroyHandler
    from troy.adapters.openai_agents import TroyHooks
    from troy.adapters.crewai import enable_troy, disable_troy

Without TROY_URL the guard runs locally, in a ``troyctl guard --stdio`` child process
(troyctl on PATH, or TROY_BIN). With TROY_URL and TROY_TOKEN it asks a running
``troyctl serve --http ADDR --http-tokens FILE`` instead (or its NATS guard service with
``TroyGuard(client=troy.nats.NatsClient())``). The standard library only.
"""

from .client import Client, TroyError
from .guard import Decision, TroyGuard, guarded

__all__ = ["TroyGuard", "Decision", "guarded", "Client", "TroyError"]
