"""The data of a trace, as the Python tool troy grew from models it: StepType, Step, Trace
and Violation, with the same fields and defaults.

They are plain dataclasses (the package uses the standard library only) with the few
pydantic methods code written for that tool calls: model_dump, model_dump_json and
model_copy.
"""

import copy
import dataclasses
import json
from enum import Enum
from typing import Any, Dict, List, Optional


class StepType(str, Enum):
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    DECISION = "decision"
    OBSERVATION = "observation"


class _Model:
    """What the models share: pydantic's dump and copy methods."""

    def model_dump(self, mode="python"):
        out = {}
        for f in dataclasses.fields(self):
            out[f.name] = _dump(getattr(self, f.name), mode)
        return out

    def model_dump_json(self, indent=None):
        return json.dumps(self.model_dump(mode="json"), indent=indent)

    def model_copy(self, update=None, deep=False):
        new = copy.deepcopy(self) if deep else copy.copy(self)
        for k, v in (update or {}).items():
            setattr(new, k, v)
        return new

    @classmethod
    def model_validate(cls, data):
        return cls(**data)


def _dump(v, mode):
    if isinstance(v, _Model):
        return v.model_dump(mode)
    if isinstance(v, list):
        return [_dump(x, mode) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x, mode) for k, x in v.items()}
    if isinstance(v, Enum) and mode == "json":
        return v.value
    return v


@dataclasses.dataclass(kw_only=True)
class Step(_Model):
    """A single step in an agent execution trace."""

    step_id: str
    type: StepType
    description: str
    input: Dict[str, Any] = dataclasses.field(default_factory=dict)
    output: Dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)
    timestamp: Optional[str] = None
    parent_step_id: Optional[str] = None

    def __post_init__(self):
        try:
            self.type = StepType(self.type)
        except ValueError:
            raise ValueError(f"step {self.step_id!r}: type {self.type!r} is not one of "
                             f"{', '.join(t.value for t in StepType)}") from None


@dataclasses.dataclass(kw_only=True)
class Trace(_Model):
    """A complete agent execution trace (at least one step)."""

    trace_id: str
    agent_name: str
    steps: List[Step]
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.steps = [s if isinstance(s, Step) else Step(**s) for s in self.steps]
        if not self.steps:
            raise ValueError(f"trace {self.trace_id!r}: steps: expected at least 1 step")


@dataclasses.dataclass(kw_only=True)
class Violation(_Model):
    """A policy violation found during evaluation."""

    rule_id: str
    rule_description: str
    step_id: str
    severity: str = "medium"
    details: str = ""
