"""validate."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ..delivery.report import Report, Severity
from ..delivery.validate import validate
from .app import app


class Format(str, Enum):
    """``validate --format``: text or the report as JSON."""
    text = "text"
    json = "json"


def format_text(report: Report, info: bool = True) -> str:
    """Findings grouped by severity, one line each (info lines only if asked), then a summary line."""
    lines = []
    for severity in (Severity.ERROR, Severity.WARNING) + ((Severity.INFO,) if info else ()):
        for f in report.of(severity):
            lines.append(f"{severity.value} {f.path}: {f.message}" + (f" ({f.hint})" if f.hint else ""))
    members = report.details.get("members", [])
    areas = report.details.get("staff_areas", [])
    parts = []
    if members:
        raw = sum(1 for m in members if m["raw"])
        restored = sum(1 for m in members if m["restored"])
        parts.append(f"{len(members)} member{'s' if len(members) != 1 else ''}, raw {raw}/{len(members)}, "
                     f"restored {restored}/{len(members)}")
    if areas:
        parts.append(f"{len(areas)} staff area{'s' if len(areas) != 1 else ''}")
    counts = ", ".join(f"{len(report.of(s))} {s.value}{'s' if s is not Severity.INFO and len(report.of(s)) != 1 else ''}"
                       for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
    lines.append(f"{report.root}: flavour {report.flavour} ({'; '.join(parts)}); {counts}; "
                 f"{report.details.get('files', 0)} files")
    return "\n".join(lines)


@app.command("validate")
def validate_cmd(
    path: Path = typer.Argument(..., help="A project folder, a member folder, or a staff reduction area."),
    fmt: Format = typer.Option(Format.text, "--format", help="text (one line per finding) or json."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too (exit 1)."),
) -> None:
    """Check a delivery tree and say exactly what is wrong (exit 0 clean, 1 with errors, 2 bad usage)."""
    report = validate(path)
    typer.echo(report.to_json() if fmt is Format.json else format_text(report))
    if not report.ok(strict=strict):
        raise typer.Exit(1)
