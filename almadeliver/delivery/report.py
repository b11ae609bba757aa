"""Findings about a delivery tree or a staff reduction area (validate, check)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum


class Severity(str, Enum):
    """How bad a finding is: an error fails ``validate`` and ``check``, a warning only with ``--strict``."""
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass
class Finding:
    """One thing a check found: severity, check id, path, message and what to do."""
    severity: Severity
    check: str                 # short id of the check, e.g. "raw.missing-asdm"
    path: str                  # relative to the report root
    message: str
    hint: str | None = None
    numbers: dict | None = None    # the figures behind the verdict (fractions, scatters, fluxes, ...)


@dataclass
class Report:
    """The findings of ``validate`` or ``check`` for one tree, and what was detected in it."""
    root: str
    flavour: str               # e.g. "manual", "pipeline", "cycle0", "staff-area"
    details: dict = field(default_factory=dict)   # what was detected (raw present, restored, ...)
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: Severity, check: str, path: str, message: str, hint: str | None = None,
            numbers: dict | None = None) -> None:
        """Add a finding (``numbers``: the figures it was judged on, e.g. a flagged fraction)."""
        self.findings.append(Finding(severity, check, path, message, hint, numbers))

    def of(self, severity: Severity) -> list[Finding]:
        """The findings of ``severity``."""
        return [f for f in self.findings if f.severity is severity]

    def ok(self, strict: bool = False) -> bool:
        """No errors (and, when strict, no warnings either)."""
        return not self.of(Severity.ERROR) and not (strict and self.of(Severity.WARNING))

    def to_json(self) -> str:
        """The report as JSON (``validate --format json``, ``check --json``)."""
        return json.dumps(asdict(self), indent=1, default=str)
