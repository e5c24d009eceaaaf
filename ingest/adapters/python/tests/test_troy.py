"""Tests of the adapters against a real troyctl serve HTTP gateway (TROY_URL, TROY_TOKEN).
The frameworks cannot be installed here; the tests call the adapters' hooks the way the
frameworks do, and CrewAI's BaseTool is a stand-in (tests/standins)."""

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "standins"))

from troy import Client, TroyError, TroyGuard, guarded  # noqa: E402
from troy.nats import NatsClient  # noqa: E402
from troy.adapters.crewai import disable_troy, enable_troy  # noqa: E402
from troy.adapters.langchain import TroyHandler  # noqa: E402
from troy.adapters.openai_agents import TroyHooks  # noqa: E402


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


class GuardTest(unittest.TestCase):
    def test_modes(self):
        seen = []
        for mode, blocked in (("enforce", True), ("monitor", False), ("dry-run", False)):
            g = TroyGuard(mode=mode, agent_name="py-agent", metadata_fn=admin_tools, on_violation=seen.append)
            self.assertTrue(g.check("search", {"q": "x"})["allowed"])
            if blocked:
                with self.assertRaises(PermissionError) as cm:
                    g.check("bash", {"cmd": "ls"})
                self.assertIn("privileged-escalation-guard", str(cm.exception))
            else:
                d = g.check("bash", {"cmd": "ls"})
                self.assertTrue(d["allowed"])
                self.assertEqual(d["mode"], mode)
            self.assertEqual(seen[-1]["violations"][0]["rule_id"], "privileged-escalation-guard")
        self.assertEqual(len(seen), 3)
        with self.assertRaises(ValueError):
            TroyGuard(mode="loud")

    def test_output_end_and_report(self):
        g = TroyGuard(agent_name="py-agent", metadata_fn=admin_tools)
        d = g.check("get_profile", {"id": 7})
        g.record_output(d["step_id"], {"name": "Jane"})
        g.check("search", "plain text input")
        g.end()
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
        with self.assertRaises(PermissionError):
            shell("rm -rf /")
        self.assertEqual(ran, ["troy"])
        g.end()
        steps = wait_report(g)["trace"]["steps"]
        self.assertEqual(steps[0]["output"], {"result": "results for troy"})
        self.assertEqual(len(steps), 2)  # the blocked call is recorded too

    def test_missing_metadata_warns_once(self):
        import troy.guard as tg

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
        with self.assertRaises(PermissionError):
            TroyGuard(token="wrong").check("search")
        d = TroyGuard(token="wrong", fail_open=True).check("search")  # fails open when asked
        self.assertTrue(d["allowed"])


class NatsTest(unittest.TestCase):
    """The same guard over NATS (TROY_NATS_URL), with the standard library's sockets."""

    def test_guard_over_nats(self):
        nats = NatsClient()
        try:
            g = TroyGuard(agent_name="py-nats", metadata_fn=admin_tools, client=nats)
            d = g.check("get_profile", {"id": 7})
            g.record_output(d["step_id"], {"name": "Jane"})
            with self.assertRaises(PermissionError):
                g.check("bash", {"cmd": "ls"})
            with self.assertRaises(TroyError) as cm:
                nats.check("", "a", "")  # the guard refuses: 400, as a TroyError
            self.assertEqual(cm.exception.status, 400)
            g.end()
            steps = wait_report(TroyGuard(agent_name="py-nats", session=g.session))["trace"]["steps"]
            self.assertEqual([s["description"] for s in steps], ["get_profile", "bash"])
            self.assertEqual(steps[0]["output"], {"name": "Jane"})
        finally:
            nats.close()
        with self.assertRaises(TroyError) as cm:
            NatsClient("nats://127.0.0.1:1", timeout=1).check("s", "a", "search")
        self.assertEqual(cm.exception.code, "unavailable")


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
                with self.assertRaises(PermissionError) as cm:
                    g.check("chat", {"prompt": "hi"}, "llm_call")
                self.assertIn("rule troy-unbounded-consumption could not be evaluated", str(cm.exception))
                d = g.decisions[-1]
                self.assertFalse(d["allowed"])
                self.assertEqual(d["violations"], [])
                self.assertEqual(d["rule_errors"][0]["rule_id"], "troy-unbounded-consumption")
                self.assertIn("string > int", d["rule_errors"][0]["error"])
        finally:
            nats.close()

    def test_rule_errors_are_listed_in_monitor_mode(self):
        for mode in ("monitor", "dry-run"):
            d = TroyGuard(policy=self.policy, mode=mode, agent_name="py-rules", metadata_fn=self.tokens("200000")).check("chat", {}, "llm_call")
            self.assertTrue(d["allowed"])
            self.assertEqual([k for k in ("step_id", "allowed", "violations", "risk_score", "mode", "rule_errors") if k not in d], [])
            self.assertEqual(len(d["rule_errors"]), 1)
        d = TroyGuard(policy=self.policy, agent_name="py-rules", metadata_fn=self.tokens(5)).check("chat", {}, "llm_call")
        self.assertEqual(d["rule_errors"], [])

    def test_numbers_as_python_writes_them(self):
        for value, allowed in ((float("inf"), False), (10**30, False), (float("nan"), True), (-float("inf"), True), (5.0, True)):
            g = TroyGuard(policy=self.policy, agent_name="py-rules", metadata_fn=self.tokens(value))
            if allowed:
                self.assertEqual(g.check("chat", {}, "llm_call")["rule_errors"], [], value)
            else:
                with self.assertRaises(PermissionError) as cm:
                    g.check("chat", {}, "llm_call")
                self.assertIn("troy-unbounded-consumption", str(cm.exception))
                self.assertEqual(g.decisions[-1]["rule_errors"], [])
        g = TroyGuard(policy=self.policy, agent_name="py-rules")
        d = g.check("search", {"n": 10**30, "x": float("inf"), "y": float("nan"), "z": 5.0})
        g.end()
        steps = wait_report(g)["trace"]["steps"]
        self.assertEqual(steps[0]["input"]["n"], 10**30)
        self.assertEqual(steps[0]["input"]["x"], float("inf"))
        self.assertNotEqual(steps[0]["input"]["y"], steps[0]["input"]["y"])  # NaN
        self.assertIsInstance(steps[0]["input"]["z"], float)
        self.assertTrue(d["allowed"])


class LangChainTest(unittest.TestCase):
    def test_handler(self):
        blocked = []
        h = TroyHandler(agent_name="lc-agent", metadata_fn=admin_tools, on_violation=blocked.append)
        h.on_chain_start({"name": "AgentExecutor"}, {"input": "hi"})
        h.on_llm_start({"name": "ChatOpenAI"}, ["What should I do?"], run_id="llm-1")
        h.on_llm_end("use the search tool", run_id="llm-1")
        h.on_tool_start({"name": "search"}, "weather", run_id="t-1")
        h.on_tool_end("sunny", run_id="t-1")
        with self.assertRaises(PermissionError):
            h.on_tool_start({"name": "bash"}, "ls", run_id="t-2")
        h.on_chain_end({"output": "done"})
        self.assertEqual(len(blocked), 1)
        steps = wait_report(h.guard)["trace"]["steps"]
        self.assertEqual([(s["type"], s["description"]) for s in steps],
                         [("llm_call", "ChatOpenAI"), ("tool_call", "search"), ("tool_call", "bash")])
        self.assertEqual(steps[1]["output"], {"result": "sunny"})


class OpenAIAgentsTest(unittest.TestCase):
    def test_hooks(self):
        class Tool:
            def __init__(self, name):
                self.name = name

        class Agent:
            name = "assistant"

        hooks = TroyHooks(mode="monitor", metadata_fn=admin_tools)

        async def run():
            await hooks.on_tool_start(None, Agent(), Tool("bash"))
            await hooks.on_tool_end(None, Agent(), Tool("bash"), "listing")
            await hooks.on_agent_end(None, Agent(), "final")

        asyncio.run(run())
        steps = wait_report(hooks.guard)["trace"]["steps"]
        self.assertEqual(steps[0]["description"], "bash")
        self.assertEqual(steps[0]["output"], {"result": "listing"})

        enforcing = TroyHooks(metadata_fn=admin_tools)
        with self.assertRaises(PermissionError):
            asyncio.run(enforcing.on_tool_start(None, Agent(), Tool("bash")))


class CrewAITest(unittest.TestCase):
    def test_enable_disable(self):
        from crewai.tools import BaseTool

        search = BaseTool("search", lambda q: f"found {q}")
        bash = BaseTool("bash", lambda c: "ran")
        g = enable_troy(agent_name="crew", metadata_fn=admin_tools)
        try:
            self.assertEqual(search.run("troy"), "found troy")
            with self.assertRaises(PermissionError):
                bash.run("ls")
        finally:
            disable_troy()
        self.assertEqual(bash.run("ls"), "ran")  # not guarded any more
        g.end()
        steps = wait_report(g)["trace"]["steps"]
        self.assertEqual([s["description"] for s in steps], ["search", "bash"])


if __name__ == "__main__":
    unittest.main()
