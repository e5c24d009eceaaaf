"""Puts the package and the framework stand-ins on the path, for every test module."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(HERE, ".."), os.path.join(HERE, "standins")):
    if p not in sys.path:
        sys.path.insert(0, p)

# The tests run twice: against the local guard (no TROY_URL: a troyctl child, TROY_BIN)
# and against a troyctl serve (TROY_URL, TROY_TOKEN). Most do not care which.
REMOTE = bool(os.environ.get("TROY_URL"))
