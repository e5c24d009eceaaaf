"""The guard over NATS with an agent's credential (TROY_CREDS, from troyctl auth agent
py-creds) against a troyctl serve with authentication on (TROY_NATS_URL). Skipped
without a credential."""

import os
import unittest

from _setup import REMOTE  # noqa: F401  (puts the package on the path)

from troy import TroyError, TroyGuard
from troy.nats import NatsClient, inbox_prefix, read_creds


@unittest.skipUnless(os.environ.get("TROY_CREDS"), "needs an agent's credential (TROY_CREDS)")
class CredsTest(unittest.TestCase):
    def test_own_agent(self):
        jwt, seed = read_creds(os.environ["TROY_CREDS"])
        self.assertTrue(seed.startswith("SU"))
        self.assertEqual(inbox_prefix(jwt), "_INBOX.py-creds")
        nats = NatsClient()
        try:
            g = TroyGuard(agent_name="py-creds", client=nats, metadata_fn=lambda a, i, t: {"permission_level": "user"})
            self.assertTrue(g.check("search", {"q": "weather"}).allowed)
            g.end()
        finally:
            nats.close()

    def test_another_agent_is_refused(self):
        nats = NatsClient(timeout=2)
        try:
            with self.assertRaises(TroyError) as cm:
                nats.check("s", "someone-else", "search")
            self.assertIn("Permissions Violation", str(cm.exception))
        finally:
            nats.close()

    def test_not_a_creds_file(self):
        with self.assertRaises(ValueError):
            read_creds(__file__)
