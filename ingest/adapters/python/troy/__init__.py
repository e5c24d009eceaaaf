"""troy adapters: send an agent's steps to troy and ask its guard before tools run.

The import paths and names are those of the Python tool troy grew from, so code that used
it keeps its imports:

    from troy.guard import TroyGuard, guarded
    from troy.adapters.langchain import TroyHandler
    from troy.adapters.openai_agents import TroyHooks
    from troy.adapters.crewai import enable_troy, disable_troy

They talk to a running ``troyctl serve --http ADDR --http-tokens FILE`` over HTTP, or to
its guard service over NATS (``TroyGuard(client=troy.nats.NatsClient())``), with the
standard library only; the addresses and token come from arguments or the TROY_URL,
TROY_TOKEN and TROY_NATS_URL environment variables.
"""

from .guard import TroyGuard, guarded
from .client import Client, TroyError

__all__ = ["TroyGuard", "guarded", "Client", "TroyError"]
