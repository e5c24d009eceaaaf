"""The Python tool's guard example (examples/demo_guard.py) and the behaviour of its guard
tests, as tests: the code is the tool's, unchanged; the assertions are ours. They run
against the local guard and against a server alike."""

import unittest

import _setup  # noqa: F401

from troy.guard import Decision, TroyGuard, guarded
from troy.models import StepType, Trace, Violation
from troy.policy.engine import PolicyRule

# -- Policy rules using real-time any_prev() pattern (the example's, unchanged) --------

RULES = [
    PolicyRule(
        rule_id="pii-exfiltration-rt",
        description="PII exfiltration (real-time)",
        condition=(
            "get(step, 'metadata.network_zone') == 'external' "
            "and step['type'] == 'tool_call' "
            "and any_prev(lambda s: get(s, 'metadata.data_classification') == 'pii')"
        ),
        severity="critical",
        weight=50,
    ),
    PolicyRule(
        rule_id="block-external-unauth",
        description="Block unauthorized external calls",
        condition="get(step, 'metadata.network_zone') == 'external' and get(step, 'metadata.authorized') is not True",
        severity="high",
        weight=30,
    ),
]


def ids(decision):
    return sorted(v.rule_id for v in decision.violations)


class GuardExampleTest(unittest.TestCase):
    def test_safe_workflow(self):
        guard = TroyGuard(policy=RULES, agent_name="safe-agent", mode="enforce")
        d1 = guard.check("read_public_data", metadata={"data_classification": "public"})
        d2 = guard.check("send_internal_email", metadata={"network_zone": "internal"})
        self.assertIsInstance(d1, Decision)
        self.assertTrue(d1.allowed and d2.allowed)
        self.assertEqual((d1.violations, d2.risk_score), ([], 0))
        trace = guard.get_trace()
        self.assertIsInstance(trace, Trace)
        self.assertEqual(len(trace.steps), 2)
        self.assertEqual([s.description for s in trace.steps], ["read_public_data", "send_internal_email"])
        self.assertEqual(trace.steps[0].type, StepType.TOOL_CALL)
        self.assertEqual(trace.agent_name, "safe-agent")

    def test_pii_exfiltration_blocked(self):
        guard = TroyGuard(policy=RULES, agent_name="risky-agent", mode="enforce")
        d1 = guard.check("read_customer_pii", metadata={"data_classification": "pii"})
        self.assertTrue(d1.allowed)
        d2 = guard.check("send_to_external_api", metadata={"network_zone": "external"})
        self.assertFalse(d2.allowed)
        self.assertEqual(ids(d2), ["block-external-unauth", "pii-exfiltration-rt"])
        self.assertEqual(d2.risk_score, 80)
        v = {v.rule_id: v for v in d2.violations}["pii-exfiltration-rt"]
        self.assertIsInstance(v, Violation)
        self.assertEqual((v.rule_description, v.severity, v.step_id), ("PII exfiltration (real-time)", "critical", d2.step_id))
        self.assertEqual(d2.mode, "enforce")

    def test_monitor_mode(self):
        alerts = []
        guard = TroyGuard(policy=RULES, agent_name="monitored-agent", mode="monitor",
                          on_violation=lambda d: alerts.append(d))
        d1 = guard.check("read_customer_pii", metadata={"data_classification": "pii"})
        d2 = guard.check("send_to_external_api", metadata={"network_zone": "external"})
        self.assertTrue(d1.allowed and d2.allowed)
        self.assertEqual(ids(d2), ["block-external-unauth", "pii-exfiltration-rt"])
        self.assertEqual(len(alerts), 1)
        self.assertEqual(ids(alerts[0]), ["block-external-unauth", "pii-exfiltration-rt"])
        self.assertEqual(alerts[0].step_id, d2.step_id)

    def test_dry_run_no_callback(self):
        received = []
        guard = TroyGuard(policy=RULES, mode="dry-run", on_violation=received.append)
        d = guard.check("send_data", metadata={"network_zone": "external"})
        self.assertTrue(d.allowed)
        self.assertEqual(ids(d), ["block-external-unauth"])
        self.assertEqual(received, [])

    def test_authorized_external_call(self):
        guard = TroyGuard(policy=RULES)
        self.assertTrue(guard.check("send", metadata={"network_zone": "external", "authorized": True}).allowed)
        self.assertFalse(guard.check("send", metadata={"network_zone": "external", "authorized": "yes"}).allowed)


class GuardBehaviourTest(unittest.TestCase):
    def test_invalid_mode(self):
        with self.assertRaisesRegex(ValueError, "Invalid mode 'loud'"):
            TroyGuard(policy=RULES, mode="loud")

    def test_positional_arguments_in_the_tools_order(self):
        guard = TroyGuard(RULES, "positional-agent", "monitor")
        self.assertEqual((guard.mode, guard.agent_name), ("monitor", "positional-agent"))
        self.assertTrue(guard.check("send", {"to": "x"}, {"network_zone": "external"}, StepType.TOOL_CALL).allowed)

    def test_cumulative_risk(self):
        r1 = PolicyRule("r1", "d1", "True", weight=30)
        r2 = PolicyRule("r2", "d2", "True", weight=25)
        guard = TroyGuard(policy=[r1, r2])
        self.assertEqual(guard.check("action1").risk_score, 55)
        self.assertEqual(guard.check("action2").risk_score, 55)  # distinct rules count once
        capped = TroyGuard(policy=[PolicyRule(f"r{i}", "d", "True", weight=40) for i in range(5)])
        self.assertEqual(capped.check("action").risk_score, 100)

    def test_step_types(self):
        rule = PolicyRule("no-llm", "No LLM calls", "step['type'] == 'llm_call'", severity="low", weight=5)
        guard = TroyGuard(policy=[rule])
        self.assertTrue(guard.check("search").allowed)
        d = guard.check("chat", {"prompt": "hi"}, step_type=StepType.LLM_CALL)
        self.assertFalse(d.allowed)
        self.assertEqual((ids(d), d.violations[0].severity, d.risk_score), (["no-llm"], "low", 5))
        self.assertFalse(guard.check("chat", step_type="llm_call").allowed)

    def test_trace_and_outputs(self):
        guard = TroyGuard(policy=[], agent_name="my-agent")
        with self.assertRaisesRegex(ValueError, "No steps recorded"):
            guard.get_trace()
        d = guard.check("read_file", input={"path": "/data"})
        guard.record_output(d.step_id, {"content": "hello"})
        guard.check("step2")
        trace = guard.get_trace()
        self.assertEqual(len(trace.steps), 2)
        self.assertEqual(trace.steps[0].input, {"path": "/data"})
        self.assertEqual(trace.steps[0].output, {"content": "hello"})
        with self.assertRaises(KeyError):
            guard.record_output("nonexistent", {})

    def test_reset(self):
        guard = TroyGuard(policy=[RULES[0]], mode="enforce")
        guard.check("read_pii", metadata={"data_classification": "pii"})
        guard.reset()
        with self.assertRaisesRegex(ValueError, "No steps recorded"):
            guard.get_trace()
        self.assertTrue(guard.check("send_external", metadata={"network_zone": "external"}).allowed)
        guard.check("read_pii_again", metadata={"data_classification": "pii"})
        self.assertFalse(guard.check("send_external", metadata={"network_zone": "external"}).allowed)

    def test_blocked_step_stays_in_history(self):
        rule = PolicyRule("second-send", "Second send", "step['description'] == 'send' and any_prev(lambda s: s['description'] == 'send')")
        guard = TroyGuard(policy=[PolicyRule("no-send", "No send", "step['description'] == 'send'"), rule])
        self.assertEqual(ids(guard.check("send")), ["no-send"])
        self.assertEqual(ids(guard.check("send")), ["no-send", "second-send"])

    def test_guarded(self):
        guard = TroyGuard(policy=[PolicyRule("always-block", "Always block", "step['description'] == 'dangerous'", severity="critical")])

        @guarded(guard)
        def greet(name):
            return f"Hello, {name}!"

        ran = []

        @guarded(guard)
        def dangerous():
            ran.append(1)
            return "should not run"

        self.assertEqual(greet("Alice"), "Hello, Alice!")
        with self.assertRaises(PermissionError) as cm:
            dangerous()
        self.assertEqual(str(cm.exception), "Blocked by policy: ['Always block']")
        self.assertEqual(ran, [])
        steps = guard.get_trace().steps
        self.assertEqual(steps[0].input, {"args": ["Alice"], "kwargs": {}})
        self.assertEqual(steps[0].output, {"result": "Hello, Alice!"})
        self.assertEqual([s.description for s in steps], ["greet", "dangerous"])  # the blocked call is recorded

    def test_guarded_in_monitor_mode_runs(self):
        guard = TroyGuard(policy=[PolicyRule("always", "Always", "True")], mode="monitor")

        @guarded(guard)
        def add(a, b):
            return a + b

        self.assertEqual(add(2, 3), 5)

    def test_policy_forms(self):
        import json
        import os
        import tempfile
        from pathlib import Path

        doc = {"policy_id": "forms", "rules": [{"rule_id": "no-rm", "description": "No rm", "condition": "matches(str(step.get('input', {})), r'rm -rf')"}]}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "policy.json")
            with open(path, "w") as f:
                json.dump(doc, f)
            for policy in (path, Path(path), doc):
                guard = TroyGuard(policy=policy)
                self.assertEqual(ids(guard.check("bash", {"cmd": "rm -rf /"})), ["no-rm"], policy)
                self.assertTrue(guard.check("bash", {"cmd": "ls"}).allowed)
        with self.assertRaises(FileNotFoundError):
            TroyGuard(policy="no/such/policy.json")
        with self.assertRaisesRegex(ValueError, "rules"):
            TroyGuard(policy={"policy_id": "empty"})


if __name__ == "__main__":
    unittest.main()
