"""What only a troy server does: its default policy, reports, tokens, the NATS guard, rule
errors and numbers as Python writes them (TROY_URL, TROY_TOKEN, TROY_NATS_URL). Skipped
against the local guard."""

import os
import time
import unittest

from _setup import REMOTE

from troy import Client, TroyError, TroyGuard, guarded
from troy.nats import NatsClient


def admin_tools(action, input, step_type):
    """metadata_fn: the bash tool runs with admin rights."""
    return {"permission_level": "admin"} if action == "bash" else {"permission_level": "user"}


def wait_report(guard, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return guard.report()
        except TroyError as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling for the pipeline's result, bounded by the deadline


def server(cls):
    return unittest.skipUnless(REMOTE, "needs a troy server (TROY_URL)")(cls)


@server
class GuardTest(unittest.TestCase):
    def test_modes_with_the_default_policy(self):
        seen = []
        for mode, blocked in (("enforce", True), ("monitor", False), ("dry-run", False)):
            g = TroyGuard(mode=mode, agent_name="py-agent", metadata_fn=admin_tools, on_violation=seen.append)
            self.assertTrue(g.check("search", {"q": "x"}).allowed)
            d = g.check("bash", {"cmd": "ls"})
            self.assertEqual(d.allowed, not blocked)
            self.assertEqual(d.mode, mode)
            self.assertEqual(d.violations[0].rule_id, "privileged-escalation-guard")
        # on_violation is called in monitor mode only, with the enforce-mode verdict
        self.assertEqual(len(seen), 1)
        self.assertFalse(seen[0].allowed)
        self.assertEqual(seen[0].violations[0].rule_id, "privileged-escalation-guard")

    def test_output_end_and_report(self):
        g = TroyGuard(agent_name="py-agent", metadata_fn=admin_tools)
        d = g.check("get_profile", {"id": 7})
        g.record_output(d.step_id, {"name": "Jane"})
        g.check("search", "plain text input")
        g.end()
        self.assertEqual(len(g.get_trace().steps), 2)  # the ended session's trace
        a = wait_report(g)
        steps = a["trace"]["steps"]
        self.assertEqual([s["description"] for s in steps], ["get_profile", "search"])
        self.assertEqual(steps[0]["output"], {"name": "Jane"})
        self.assertEqual(steps[1]["input"], {"input": "plain text input"})

    def test_decorator(self):
        g = TroyGuard(agent_name="py-agent", metadata_fn=admin_tools)
        ran = []

        @guarded(g)
        def search(query):
            ran.append(query)
            return f"results for {query}"

        @guarded(g, action="bash")
        def shell(cmd):
            ran.append(cmd)
            return "done"

        self.assertEqual(search(query="troy"), "results for troy")
        with self.assertRaises(PermissionError) as cm:
            shell("rm -rf /")
        self.assertEqual(str(cm.exception), "Blocked by policy: ['Standard agents cannot use admin-level tools or endpoints.']")
        self.assertEqual(ran, ["troy"])
        g.end()
        steps = wait_report(g)["trace"]["steps"]
        self.assertEqual(steps[0]["output"], {"result": "results for troy"})
        self.assertEqual(len(steps), 2)  # the blocked call is recorded too

    def test_missing_metadata_warns_once(self):
        import troy.guard.core as tg

        tg._warned.clear()
        g = TroyGuard(agent_name="py-agent")  # no metadata_fn: the policy's keys are missing
        with self.assertWarns(UserWarning) as cm:
            g.check("search", {"q": "x"})
        self.assertIn("permission_level", " ".join(str(w.message) for w in cm.warnings))
        import warnings as w

        with w.catch_warnings(record=True) as caught:
            w.simplefilter("always")
            TroyGuard(agent_name="py-agent").check("search", {"q": "y"})
        self.assertEqual([str(x.message) for x in caught if "permission_level" in str(x.message)], [])

    def test_token_and_availability(self):
        with self.assertRaises(TroyError) as cm:
            Client(token="wrong").check("s", "a", "search")
        self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
        with self.assertWarns(RuntimeWarning):
            d = TroyGuard(token="wrong").check("search")  # the guard fails closed
        self.assertFalse(d.allowed)
        self.assertIn("401", d.rule_errors[0]["error"])
        with self.assertWarns(RuntimeWarning):
            self.assertTrue(TroyGuard(token="wrong", fail_open=True).check("search").allowed)  # open when asked

    def test_uploaded_policy_is_idempotent(self):
        doc = {"policy_id": "up", "rules": [{"rule_id": "r", "description": "d", "condition": "True"}]}
        a, b = TroyGuard(policy=doc), TroyGuard(policy=doc)
        self.assertEqual(len(a._backend.policy), 64)
        self.assertEqual(a._backend.policy, b._backend.policy)
        self.assertEqual([v.rule_id for v in a.check("x").violations], ["r"])

    def test_template_by_name(self):
        """A bundled template's name works against a server as it does locally."""
        for name in ("soc2", "soc2-trust-services"):
            g = TroyGuard(policy=name, agent_name="py-template")
            d = g.check("deploy", metadata={"permission_level": "admin"})
            self.assertFalse(d.allowed)
            self.assertEqual(d.violations[0].rule_id, "soc2-access-control")


@server
class NatsTest(unittest.TestCase):
    """The same guard over NATS (TROY_NATS_URL), with the standard library's sockets."""

    def test_guard_over_nats(self):
        nats = NatsClient()
        try:
            g = TroyGuard(agent_name="py-nats", metadata_fn=admin_tools, client=nats)
            d = g.check("get_profile", {"id": 7})
            g.record_output(d.step_id, {"name": "Jane"})
            self.assertFalse(g.check("bash", {"cmd": "ls"}).allowed)
            with self.assertRaises(TroyError) as cm:
                nats.check("", "a", "")  # the guard refuses: 400, as a TroyError
            self.assertEqual(cm.exception.status, 400)
            session = g.session
            g.end()
            steps = wait_report(TroyGuard(agent_name="py-nats", session=session))["trace"]["steps"]
            self.assertEqual([s["description"] for s in steps], ["get_profile", "bash"])
            self.assertEqual(steps[0]["output"], {"name": "Jane"})
        finally:
            nats.close()
        with self.assertRaises(TroyError) as cm:
            NatsClient("nats://127.0.0.1:1", timeout=1).check("s", "a", "search")
        self.assertEqual(cm.exception.code, "unavailable")


@server
class RuleErrorTest(unittest.TestCase):
    """A rule that cannot be evaluated (the guardrails template's token limit given a string) blocks
    in enforce mode and is listed in every mode, over HTTP and NATS; numbers travel as
    Python's json writes them."""

    def setUp(self):
        self.policy = os.environ["TROY_RULE_ERROR_POLICY"]

    def tokens(self, value):
        return lambda action, input, step_type: {"total_tokens": value}

    def test_rule_errors_block_in_enforce_mode(self):
        nats = NatsClient()
        try:
            for client in (None, nats):
                g = TroyGuard(policy=self.policy, agent_name="py-rules", metadata_fn=self.tokens("200000"), client=client)

                @guarded(g, step_type="llm_call")
                def chat(prompt):
                    return "hi"

                with self.assertRaises(PermissionError) as cm:
                    chat("hi")
                self.assertIn("rule troy-unbounded-consumption could not be evaluated", str(cm.exception))
                d = g.decisions[-1]
                self.assertFalse(d.allowed)
                self.assertEqual(d.violations, [])
                self.assertEqual(d.rule_errors[0]["rule_id"], "troy-unbounded-consumption")
                self.assertIn("string > int", d.rule_errors[0]["error"])
        finally:
            nats.close()

    def test_rule_errors_are_listed_in_monitor_mode(self):
        for mode in ("monitor", "dry-run"):
            d = TroyGuard(policy=self.policy, mode=mode, agent_name="py-rules", metadata_fn=self.tokens("200000")).check("chat", {}, step_type="llm_call")
            self.assertTrue(d.allowed)
            self.assertEqual(len(d.rule_errors), 1)
        d = TroyGuard(policy=self.policy, agent_name="py-rules", metadata_fn=self.tokens(5)).check("chat", {}, step_type="llm_call")
        self.assertEqual(d.rule_errors, [])

    def test_numbers_as_python_writes_them(self):
        for value, allowed in ((float("inf"), False), (10**30, False), (float("nan"), True), (-float("inf"), True), (5.0, True)):
            g = TroyGuard(policy=self.policy, agent_name="py-rules", metadata_fn=self.tokens(value))
            d = g.check("chat", {}, step_type="llm_call")
            self.assertEqual(d.rule_errors, [], value)
            self.assertEqual(d.allowed, allowed, value)
            if not allowed:
                self.assertEqual([v.rule_id for v in d.violations], ["troy-unbounded-consumption"])
        g = TroyGuard(policy=self.policy, agent_name="py-rules")
        d = g.check("search", {"n": 10**30, "x": float("inf"), "y": float("nan"), "z": 5.0})
        g.end()
        steps = wait_report(g)["trace"]["steps"]
        self.assertEqual(steps[0]["input"]["n"], 10**30)
        self.assertEqual(steps[0]["input"]["x"], float("inf"))
        self.assertNotEqual(steps[0]["input"]["y"], steps[0]["input"]["y"])  # NaN
        self.assertIsInstance(steps[0]["input"]["z"], float)
        self.assertTrue(d.allowed)



if __name__ == "__main__":
    unittest.main()
