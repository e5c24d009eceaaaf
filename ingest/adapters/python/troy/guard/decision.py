"""The decision the guard returns for each check."""

import dataclasses
from typing import Any, Dict, List

from ..models import Violation, _Model


@dataclasses.dataclass(kw_only=True)
class Decision(_Model):
    """Result of evaluating a single step against the policy.

    The Python tool's fields (step_id, allowed, violations, risk_score, mode), and troy's:
    rule_errors, the rules that could not be evaluated at this step ({rule_id, error}),
    which block it in enforce mode unless the policy says skip; missing_metadata, step
    metadata keys that rules read and no step has carried so far.
    """

    step_id: str
    allowed: bool
    violations: List[Violation] = dataclasses.field(default_factory=list)
    risk_score: int = 0
    mode: str = "enforce"
    rule_errors: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    missing_metadata: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def from_json(cls, d):
        """The decision from its JSON (troyctl check, the local guard, the gateway)."""
        vs = []
        for v in d.get("violations") or []:
            vs.append(Violation(rule_id=v.get("rule_id", ""), rule_description=v.get("rule_description", ""),
                                step_id=v.get("step_id") or d.get("step_id") or "", severity=v.get("severity") or "medium",
                                details=v.get("details") or ""))
        return cls(step_id=d.get("step_id") or "", allowed=bool(d.get("allowed")), violations=vs,
                   risk_score=int(d.get("risk_score") or 0), mode=d.get("mode") or "enforce",
                   rule_errors=list(d.get("rule_errors") or []), missing_metadata=list(d.get("missing_metadata") or []))
