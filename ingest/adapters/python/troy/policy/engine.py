"""Policy rules as the Python tool troy grew from has them: PolicyRule and load_policy.

Conditions are not evaluated here: troy's engine evaluates them (in the troyctl child of a
local guard, or in a deployment), converting the Python tool's expressions as it loads
them. A list of PolicyRule given to TroyGuard is sent as a policy document.
"""

import json
from pathlib import Path


class PolicyRule:
    """A single policy rule: condition is true when the rule is violated."""

    def __init__(self, rule_id, description, condition, severity="medium", weight=10):
        self.rule_id = rule_id
        self.description = description
        self.condition = condition
        self.severity = severity
        self.weight = weight

    def to_dict(self):
        """The rule as a policy file writes it."""
        return {"rule_id": self.rule_id, "description": self.description, "condition": self.condition,
                "severity": self.severity, "weight": self.weight}

    def __repr__(self):
        return f"PolicyRule(rule_id={self.rule_id!r}, severity={self.severity!r}, weight={self.weight!r})"

    def __eq__(self, other):
        return isinstance(other, PolicyRule) and self.to_dict() == other.to_dict()


def load_policy(path):
    """Loads the rules of a policy file (JSON: {"rules": [...]}), with the defaults of
    severity ("medium") and weight (10)."""
    data = json.loads(Path(path).read_text())
    rules = []
    for r in data.get("rules", []):
        rules.append(PolicyRule(rule_id=r["rule_id"], description=r["description"], condition=r["condition"],
                                severity=r.get("severity", "medium"), weight=r.get("weight", 10)))
    return rules


def policy_document(rules, policy_id="python-rules"):
    """A policy document holding rules (PolicyRule objects or rule dicts)."""
    return {"policy_id": policy_id,
            "rules": [r.to_dict() if isinstance(r, PolicyRule) else dict(r) for r in rules]}
