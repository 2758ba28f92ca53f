"""What every stage of a running study shares: the spec, the study folder, state.json, the units
by name, and the in-memory results of the units that ran so far (a dataset, a teacher folder, a
sweep's best config), which later stages read through their unit's `needs`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leader.errors import LeaderError
from leader.study.spec import StudySpec
from leader.study.state import StudyState
from leader.study.units import Unit


class _Skipped:
    """A stage's result when its unit does not apply here (an optional dataset that is absent):
    the unit is recorded as skipped and the units that need it are left out."""

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = _Skipped()


class StageFailed(LeaderError):
    """A unit that did not finish (a trial over the tolerance, an exception): the study stops."""

    def __init__(self, unit: str, message: str, failures: list[dict] | None = None):
        super().__init__(f"{unit}: {message}")
        self.unit, self.failures = unit, failures or []


class StudyIncomplete(LeaderError):
    """Raised at the end of a run with failed units; the message is the summary the user reads."""


@dataclass
class Study:
    spec: StudySpec
    dir: Path
    units: dict[str, Unit]
    echo: Callable[[str], object] = print
    state: StudyState = field(init=False)
    out: dict[str, Any] = field(default_factory=dict)  # unit name -> what its stage returned
    dataset_stats: dict[str, dict] = field(default_factory=dict)
    failed: list[StageFailed] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = StudyState(self.dir, echo=self.echo)
        self.parts.mkdir(parents=True, exist_ok=True)

    @property
    def parts(self) -> Path:
        return self.dir / "results" / "parts"

    def need(self, u: Unit, role: str) -> Any:
        """What the upstream unit `u` needs as `role` returned (None when the study has none)."""
        name = u.needs.get(role)
        return self.out.get(name) if name else None

    @property
    def datasets(self) -> dict:
        """Dataset name -> EHRDataset of this run (the paired tests need their test splits)."""
        return {u.dataset: self.out[n] for n, u in self.units.items() if u.kind == "data" and n in self.out}
