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
        """Add a finding (``numbers``: the figures it was judged on, e.g. a flagged fraction).

        Parameters
        ----------
        severity : Severity
            How bad the finding is.
        check : str
            The check's name (``readme.casa-version``, ``staff.eb.flagging``, ...).
        path : str
            The file or folder it is about.
        message : str
            What was found.
        hint : str | None, default None
            What to do about it.
        numbers : dict | None, default None
            The figures it was judged on.
        """
        self.findings.append(Finding(severity, check, path, message, hint, numbers))

    def of(self, severity: Severity) -> list[Finding]:
        """The findings of ``severity``.

        Parameters
        ----------
        severity : Severity
            The severity to keep.

        Returns
        -------
        list[Finding]
            The findings, in report order.
        """
        return [f for f in self.findings if f.severity is severity]

    def ok(self, strict: bool = False) -> bool:
        """No errors (and, when strict, no warnings either).

        Parameters
        ----------
        strict : bool, default False
            Fail on warnings too (``--strict``).

        Returns
        -------
        bool
            True when the tree passes.
        """
        return not self.of(Severity.ERROR) and not (strict and self.of(Severity.WARNING))

    def to_json(self) -> str:
        """The report as JSON (``validate --format json``, ``check --json``).

        Returns
        -------
        str
            The JSON text: every finding and the verdict.
        """
        return json.dumps(asdict(self), indent=1, default=str)
