"""prepare, check, package, package-group: the observatory staff side."""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ..delivery.report import Report, Severity
from ..delivery.staff import check_area, check_group_area, prepare_area
from ..errors import UsageError
from ..ids import Uid
from ..packaging.fromdelivery import staff_from_delivery
from ..packaging.group import package_group
from ..packaging.package import DEFAULT_MAX_SIZE, PackageResult, package_mous, parse_size
from .app import app, log

_MARK = {Severity.INFO: "pass", Severity.WARNING: "warn", Severity.ERROR: "FAIL"}
MaxSizeOption = typer.Option(DEFAULT_MAX_SIZE, "--max-size", help="Largest product tarball (10GB, 500MB, 1.5G).")
OutOption = typer.Option(Path("."), "--out", help="Folder for the tarballs, README and manifest.")
ProjectOption = typer.Option(..., "--project", help="Project code, e.g. 2013.1.00308.S.")
SgOption = typer.Option(..., "--sg", help="Science goal OUS uid.")


@app.command("prepare")
def prepare_cmd(
    mous: str = typer.Argument(..., help="The MOUS uid (uid://A001/X13e/X1fe or uid___A001_X13e_X1fe)."),
    eb: List[str] = typer.Option(..., "--eb", help="An EB uid of the MOUS (repeat for each EB)."),
    root: Path = typer.Option(Path("."), "--root", help="Folder in which to make the area."),
    from_delivery: Optional[Path] = typer.Option(
        None, "--from-delivery", help="Fill the area from this restored member folder (manual delivery)."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="With --from-delivery: the folder 'almadeliver image' wrote (default MEMBER/reimage)."),
) -> None:
    """Make the staff reduction area: Calibration_X<EB tail> per EB, Combination/calibrated, Imaging."""
    area = prepare_area(Uid.parse(mous), [Uid.parse(e) for e in eb], root)
    typer.echo(f"reduction area {area}")
    if from_delivery is not None:
        fill = staff_from_delivery(from_delivery, images or from_delivery / "reimage", area)
        typer.echo(f"filled from {fill.member} (restore log {fill.restore_log.name}, images {fill.images}):")
        for rel in fill.placed:
            typer.echo(f"  {rel}")
        return
    for folder in sorted(p for p in area.rglob("*") if p.is_dir()):
        typer.echo(f"  {folder.relative_to(area)}/")


class CheckFormat(str, Enum):
    """The forms of the checklist report ``check --format`` writes."""

    text = "text"
    json = "json"
    html = "html"


_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([A-Za-z\"]*)\s*$")
_RMS_UNITS = {"": 1.0, "jy": 1.0, "mjy": 1e-3, "ujy": 1e-6, "microjy": 1e-6}
_ANGLE_UNITS = {"": 1.0, "arcsec": 1.0, "\"": 1.0, "mas": 1e-3, "arcmin": 60.0}


def _quantity(text: Optional[str], units: dict, option: str, example: str) -> Optional[float]:
    if text is None:
        return None
    m = _QUANTITY.match(text)
    unit = m.group(2).lower().replace("/beam", "") if m else None
    if not m or unit not in units:
        raise UsageError(f"{option} {text!r} is not understood", f"write it like {example}")
    return float(m.group(1)) * units[unit]


@app.command("check")
def check_cmd(
    area: Path = typer.Argument(..., help="The reduction area (<MOUS uid___> folder)."),
    group: bool = typer.Option(False, "--group", help="AREA is a group area (<GOUS uid___> with Imaging/)."),
    fmt: CheckFormat = typer.Option(CheckFormat.text, "--format", help="text, json (with the numbers) or html."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the report here (html: needed)."),
    json_out: bool = typer.Option(False, "--json", help="Same as --format json."),
    requested_rms: Optional[str] = typer.Option(
        None, "--requested-rms", help="Requested rms per beam, e.g. 5.85mJy (default: the README's 'Proposed rms')."),
    requested_beam: Optional[str] = typer.Option(
        None, "--requested-beam", help="Requested resolution, e.g. 0.2arcsec (default: the README's request)."),
) -> None:
    """Run the final checklist: each item pass/warn/FAIL with its path and numbers. Exit 1 when an item fails."""
    rms = _quantity(requested_rms, _RMS_UNITS, "--requested-rms", "5.85mJy or 0.00585")
    beam = _quantity(requested_beam, _ANGLE_UNITS, "--requested-beam", "0.2arcsec")
    if json_out:
        fmt = CheckFormat.json
    if fmt is CheckFormat.html and output is None:
        raise UsageError("--format html needs -o FILE", "add -o report.html")
    if output is not None and not output.parent.is_dir():      # said before the checklist runs
        raise UsageError(f"-o {output}: folder {output.parent} does not exist", "create it or name another file")
    report = check_group_area(area) if group else check_area(area, rms, beam)
    if fmt is CheckFormat.html:
        from ..delivery.staffhtml import write_html_report

        written = write_html_report(report, area, output)
        typer.echo(f"{written}: {len(report.findings)} items, {len(report.of(Severity.ERROR))} failed")
    elif fmt is CheckFormat.json:
        _emit(report.to_json(), output)
    else:
        _emit(_report_text(report), output)
    if not report.ok():
        raise typer.Exit(1)


def _emit(text: str, output: Optional[Path]) -> None:
    if output is None:
        typer.echo(text)
    else:
        Path(output).write_text(text + "\n")


def _report_text(report: Report) -> str:
    lines = [f"checklist of {report.root}"]
    for f in report.findings:
        hint = f" ({f.hint})" if f.hint and f.severity is not Severity.INFO else ""
        lines.append(f"  {_MARK[f.severity]:4}  {f.check:34} {f.path}: {f.message}{hint}")
    failed = len(report.of(Severity.ERROR))
    warned = len(report.of(Severity.WARNING))
    lines.append(f"{len(report.findings) - failed - warned} passed, {warned} warned, {failed} failed"
                 + ("" if failed else ": ready to package"))
    return "\n".join(lines)


@app.command("package")
def package_cmd(
    area: Path = typer.Argument(..., help="The checked reduction area (<MOUS uid___> folder)."),
    project: str = ProjectOption,
    sg: str = SgOption,
    group: str = typer.Option(..., "--group", help="Group OUS uid."),
    max_size: str = MaxSizeOption,
    raw: Optional[Path] = typer.Option(None, "--raw", help="Folder holding <EB>.asdm.sdm for each EB."),
    out: Path = OutOption,
    script_for_pi: Optional[Path] = typer.Option(
        None, "--script-for-pi", help="The scriptForPI.py to deliver (default: AREA/script/scriptForPI.py)."),
) -> None:
    """Package a MOUS: m_of_n product tarballs, auxiliary, raw, README and a manifest."""
    _print_result(package_mous(area, project, sg, group, out, parse_size(max_size), raw, script_for_pi))


@app.command("package-group")
def package_group_cmd(
    area: Path = typer.Argument(..., help="The group area (<GOUS uid___> folder with README and Imaging/)."),
    project: str = ProjectOption,
    sg: str = SgOption,
    member: List[str] = typer.Option(..., "--member", help="A member OUS uid of the group (repeat for each; at least two)."),
    max_size: str = MaxSizeOption,
    out: Path = OutOption,
) -> None:
    """Package a group's combination products as <project>_<GOUS>_<m>_of_<n>.tar and a manifest."""
    _print_result(package_group(area, project, sg, out, parse_size(max_size), member))


def _print_result(result: PackageResult) -> None:
    for warning in result.warnings:
        log.warning(warning)
    for f in result.files:
        typer.echo(f"{f.size:>14,d}  {f.sha256[:16]}  {f.name}")
    typer.echo(f"{len(result.files)} files, {sum(f.size for f in result.files):,d} bytes in {result.out}; "
               f"manifest {result.manifest.name}")

