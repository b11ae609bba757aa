"""Running a restore: the delivery's scriptForPI.py (or the native pipeline engine) as planned, and --resume.

``restore`` runs the script in a child process, follows its progress (EB, step), streams its output
and CASA's log to files, samples the disk use of ``calibrated/`` and checks the result.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...delivery.layout import CALIBRATION_SCRIPT_SUFFIXES, FLUX_SCRIPT, Flavour, plain_name, total_power_calibrated
from ...errors import CasaError, UsageError
from ...transfer.lock import FolderLock
from .. import legacy
from ..diskspace import EXTRA_SCRIPTS, MB, DiskSampler, du_bytes, plot_disk_use
from ..native_restore import native_restore
from ..runtime import MonolithicCasa, last_words, preload, run_in_casa, stream_output
from .phasecheck import phase_scatter_in_casa
from .plan import RestorePlan
from .progress import _TP_NO_SPLIT_RE, Progress, ProgressParser

WORK = "almadeliver-restore"            # our folder in the member: logs, driver, resume holding area


# -- running --------------------------------------------------------------------------------------------
@dataclass
class RestoreResult:
    """What a restore did: time, disk use against the estimate, the MSs it left and its logs."""

    member: Path
    spacesaving: int
    engine: str
    seconds: float
    estimate_mb: int
    peak_bytes: int
    final_bytes: int
    measurement_sets: list[Path]
    casa_log: Path
    output_log: Path
    kept: list[str] = field(default_factory=list)          # EBs kept from an earlier run (--resume)
    calibrated_ebs: list[str] = field(default_factory=list)
    casa_ran: str | None = None                            # "modular CASA 6.7.0-31", "monolithic CASA 6.5.4-9"
    casa_asked: list[str] = field(default_factory=list)    # versions the calibration scripts' gates demand
    mismatch_allowed: bool = False                         # gates passed by --casa-version-mismatch allow
    disk_plot: Path | None = None                          # restore-disk.png: disk use over time vs the estimate
    # ``phase_scatter_in_casa`` of the calibrated MSs, measured in the restore's own CASA child (modular
    # CASA, not resumed); None when it was not (then ``phase_scatter`` starts a CASA of its own)
    phase_scatter: dict[str, dict] | None = None

    @property
    def within_estimate(self) -> bool:
        """True when the peak disk use stayed within scriptForPI's estimate (or the check was skipped)."""
        return self.spacesaving == -1 or self.peak_bytes <= self.estimate_mb * MB


def _logs(plan: RestorePlan) -> tuple[Path, Path, Path]:
    work = plan.path / WORK
    work.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return work, work / f"casa-{stamp}.log", work / f"scriptForPI-{stamp}.out"


def _variables(plan: RestorePlan) -> dict:
    variables: dict = {"SPACESAVING": plan.spacesaving}
    if plan.dosplit:
        variables["DOSPLIT"] = True
    return variables


def run_script(plan: RestorePlan, script: Path, cwd: Path, variables: dict, casa_log: Path,
               on_line: Callable[[str], None], phase_check: Path | None = None) -> dict | None:
    """Run one ALMA script in ``cwd`` with ``variables`` as globals, in the plan's CASA.

    Parameters
    ----------
    plan : RestorePlan
        The restore plan (``plan_restore``).
    script : Path
        The script to run.
    cwd : Path
        The folder to run it in.
    variables : dict
        Globals for the script (``SPACESAVING``, ``DOSPLIT``, ``applyonly``).
    casa_log : Path
        The CASA log file.
    on_line : Callable[[str], None]
        Called with each output line.
    phase_check : Path | None, default None
        (modular CASA only) a calibrated/ folder whose MSs the same CASA then measures
        (``script_then_phases_in_casa``).

    Returns
    -------
    dict | None
        The CASA child's answer (``phase_scatter`` in it when measured); None for a monolithic CASA.
    """
    if plan.engine == "monolithic":
        assert plan.casa is not None
        _run_monolithic(plan.casa, script, cwd, variables, casa_log, on_line,
                        pipeline=plan.member.flavour is Flavour.PIPELINE)
        return None
    return run_in_casa(script_then_phases_in_casa,
                       {"script": str(script), "cwd": str(cwd), "variables": variables,
                        "pass_version_gates": plan.passes_gates,
                        "phase_check": str(phase_check) if phase_check else None},
                       workdir=cwd, logfile=casa_log, on_line=on_line)


def script_then_phases_in_casa(script: str, cwd: str, variables: dict, pass_version_gates: bool = False,
                               phase_check: str | None = None) -> dict:
    """(CASA child) ``legacy.run_script_in_casa``; then, with ``phase_check``, the phase rms of the
    ``*.ms.split.cal`` and ``calibrated.ms`` the script left there.

    A phase check that cannot be made is left out (the caller then asks ``phase_scatter``, which
    reports why); the script's own failure is raised.

    Parameters
    ----------
    script : str
        The ALMA script.
    cwd : str
        The folder it runs in.
    variables : dict
        Globals for the script.
    pass_version_gates : bool, default False
        Pass the script's CASA version gates.
    phase_check : str | None, default None
        A calibrated/ folder to measure afterwards.

    Returns
    -------
    dict
        ``run_script_in_casa``'s answer, with ``phase_scatter`` (``phase_scatter_in_casa``) when measured.
    """
    out = legacy.run_script_in_casa(script, cwd, variables, pass_version_gates=pass_version_gates)
    if phase_check:
        mss = sorted(str(p) for p in Path(phase_check).glob("*.ms*")
                     if p.name.endswith((".ms.split.cal", "calibrated.ms")) and (p / "table.dat").is_file())
        try:
            out["phase_scatter"] = phase_scatter_in_casa(mss) if mss else {}
        except Exception as exc:  # noqa: BLE001 (the check is redone, and its error reported, by the caller)
            print(f"almadeliver: phase check left to a CASA of its own ({type(exc).__name__}: {exc})")
    return out


def _run_monolithic(casa: MonolithicCasa, script: Path, cwd: Path, variables: dict, casa_log: Path,
                    on_line: Callable[[str], None], pipeline: bool) -> None:
    """``casa --nologger --nogui [--pipeline] -c driver.py`` with a driver valid in Python 2 and 3."""
    driver = casa_log.with_name(casa_log.stem.replace("casa-", "driver-") + f"-{script.stem}.py")
    lines = [f"casalog.setlogfile({str(casa_log)!r})"]
    lines += [f"{name} = {value!r}" for name, value in variables.items()]
    lines.append(f"execfile({str(script)!r})")
    driver.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(casa.command(driver, pipeline), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail = stream_output(proc, on_line)
    if proc.wait() != 0:
        reason = last_words(tail, proc.returncode)
        raise CasaError(f"{casa.executable} failed running {script.name}: {reason}", f"see the CASA log {casa_log}")


def restore(plan: RestorePlan, on_progress: Callable[[Progress], None] | None = None,
            on_line: Callable[[str], None] | None = None, interval: float = 0.25) -> RestoreResult:
    """Run the delivery's scriptForPI.py as planned (raises the plan's refusal first).

    One restore per member at a time: a second one raises BusyError naming the pid that holds it.

    Parameters
    ----------
    plan : RestorePlan
        The restore plan (``plan_restore``).
    on_progress : Callable[[Progress], None] | None, default None
        Called when the EB, step or phase changes.
    on_line : Callable[[str], None] | None, default None
        Called with each output line of the script.
    interval : float, default 0.25
        Seconds between two samples of the disk use of calibrated/.

    Returns
    -------
    RestoreResult
        The time (s), peak and final disk use (bytes) against the estimate, the MSs made and the logs.
    """
    with FolderLock(plan.path, wait=False, what="restore of", path=plan.path / WORK / "lock"):
        return _restore(plan, on_progress, on_line, interval)


def _restore(plan: RestorePlan, on_progress: Callable[[Progress], None] | None,
             on_line: Callable[[str], None] | None, interval: float) -> RestoreResult:
    if plan.already_calibrated:
        raise UsageError(f"{plan.path} is a Cycle 0 delivery: calibrated/ already holds the calibrated MSs",
                         "use them as they are, or concatenate them with `almadeliver restore --concat`")
    plan.check()
    assert plan.script is not None
    work, casa_log, out_log = _logs(plan)
    parser = ProgressParser(plan.todo)
    failures: list[str] = []
    casa_ran = casa_description(plan)
    left_behind = f"; {plan.calibrated} is left as it is (add --resume to keep the EBs it finished, or move it away)"

    with open(out_log, "w") as out:
        out.write(f"almadeliver: {casa_ran}"
                  + (f"; the calibration scripts ask for CASA {', '.join(plan.casa_asked)}" if plan.casa_asked else "")
                  + (" (version gates passed: --casa-version-mismatch allow)" if plan.passes_gates else "") + "\n")

        def line_seen(line: str) -> None:
            out.write(line + "\n")
            out.flush()
            tp = _TP_NO_SPLIT_RE.match(line)
            if tp and tp.group(1) in plan.total_power:
                # scriptForPI v2.x says so of every TP EB: its calibrated data are <EB>.ms.cal, left in place
                note = (f"almadeliver: {tp.group(1)} is a Total Power EB: its calibrated data are "
                        f"{total_power_calibrated(plan.calibrated, tp.group(1)).relative_to(plan.path)} "
                        f"(scriptForPI v2.x leaves them there; the ERROR above is expected)")
                out.write(note + "\n")
            elif line.startswith("ERROR:") or " ERROR: " in line:
                failures.append(line.strip())
            if on_line:
                on_line(line)
            p = parser.feed(line)
            if p and on_progress:
                on_progress(p)

        start = time.monotonic()
        phases = None
        preload("matplotlib.figure", "matplotlib.backends.backend_agg")   # for plot_disk_use, while CASA runs
        if plan.resume and plan.calibrated.exists():
            sampler, kept = _resume(plan, work, casa_log, line_seen, interval)
        else:
            kept = []
            with DiskSampler(plan.calibrated, interval=interval) as sampler:
                try:
                    if plan.engine == "native":
                        native = native_restore(plan.member, plan.spacesaving, dosplit=plan.dosplit,
                                                on_line=line_seen)
                        casa_log = native.casa_log
                    else:
                        child = run_script(plan, plan.script.path, plan.script.path.parent, _variables(plan),
                                           casa_log, line_seen, phase_check=plan.calibrated)
                        phases = (child or {}).get("phase_scatter")
                except CasaError as exc:
                    partial = left_behind if plan.calibrated.exists() else ""
                    raise CasaError(exc.message + partial,
                                    f"see the script output {out_log} and the CASA log {casa_log}") from None
        seconds = time.monotonic() - start

    missing = [eb for eb in plan.todo if not _restored(plan, eb)]
    if missing:
        why = f" ({failures[-1]})" if failures else ""
        raise CasaError(f"scriptForPI ended without a calibrated MS for {', '.join(missing)}{why}{left_behind}",
                        f"see the script output {out_log} and the CASA log {casa_log}")
    mss = sorted(p for p in plan.calibrated.glob("*.ms*") if p.name.endswith((".ms.split.cal", "calibrated.ms")))
    mss += [total_power_calibrated(plan.calibrated, eb, final=True) for eb in plan.todo + kept
            if eb in plan.total_power and (total_power_calibrated(plan.calibrated, eb) / "table.dat").is_file()]
    if plan.member.flavour is Flavour.PIPELINE:   # hifa_restoredata's MSs stay in working/
        mss += sorted((plan.calibrated / "working").glob("*.ms"))
    disk_plot = plot_disk_use(sampler.samples, plan.estimate, plan.spacesaving, work / "restore-disk.png",
                              f"{plan.path.name}: restore at SPACESAVING={plan.spacesaving} ({plan.engine})")
    return RestoreResult(plan.path, plan.spacesaving, plan.engine, seconds, plan.need_mb, sampler.peak,
                         du_bytes(plan.calibrated), mss, casa_log, out_log, kept, list(plan.todo),
                         casa_ran, plan.casa_asked, plan.passes_gates, disk_plot,
                         phase_scatter=phases if phases is not None and all(str(p) in phases for p in mss
                                                                           if p.name.endswith((".ms.split.cal", "calibrated.ms"))) else None)



def casa_description(plan: RestorePlan) -> str:
    """Which CASA runs the restore, in words: ``modular CASA 6.7.0-31`` or ``monolithic CASA ... (path)``.

    Parameters
    ----------
    plan : RestorePlan
        The restore plan (``plan_restore``).

    Returns
    -------
    str
        The description.
    """
    if plan.engine == "monolithic" and plan.casa:
        return f"monolithic CASA {plan.casa.version or '(version unknown)'} ({plan.casa.executable})"
    if plan.engine == "native":
        return f"modular CASA {plan.casa_version or '?'} (native pipeline restore)"
    return f"modular CASA {plan.casa_version or '?'}"


def _restored(plan: RestorePlan, eb: str) -> bool:
    """An EB is restored when its .ms.split.cal is in calibrated/ (or, at level 3, in calibrated.ms); a
    Total Power EB when its calibrated/<EB>.calibration/<EB>.ms.cal is complete."""
    cal = plan.calibrated
    if (cal / f"{eb}.ms.split.cal" / "table.dat").is_file():
        return True
    if eb in plan.total_power:     # scriptForPI v2.x leaves it in calibrated/<EB>.calibration/
        return (total_power_calibrated(cal, eb) / "table.dat").is_file()
    if (cal / "calibrated.ms" / "table.dat").is_file() and plan.estimate.effective_level(plan.spacesaving) >= 3:
        return True
    return plan.member.flavour is Flavour.PIPELINE and (cal / "working" / f"{eb}.ms" / "table.dat").is_file()


# -- --resume -------------------------------------------------------------------------------------------
def _resume(plan: RestorePlan, work: Path, casa_log: Path, line_seen: Callable[[str], None],
            interval: float) -> tuple[DiskSampler, list[str]]:
    """Keep the finished EBs, calibrate the others with scriptForPI, then run the combining scripts.

    scriptForPI stops when calibrated/ exists and calibrates every EB it has a script for. So the
    finished ``<EB>.ms.split.cal`` (and their ``<EB>.calibration/``) are held aside, what the failed
    run left is removed, and scriptForPI runs from a shadow ``script/`` (links to the delivery's
    files without the finished EBs' scripts and without the combining scripts). Its calibrated/
    then joins the held EBs, and the combining scripts (scriptForPolCalibration,
    scriptForFluxCalibration, scriptForImagingPrep) run in calibrated/ as scriptForPI would run them.
    """
    cal, hold, shadow = plan.calibrated, work / "resume-hold", work / "resume-shadow"
    for folder in (hold, shadow):
        if folder.exists():
            shutil.rmtree(folder)
    hold.mkdir()
    kept = list(plan.finished)
    for eb in kept:
        for name in (f"{eb}.ms.split.cal", f"{eb}.calibration"):
            if (cal / name).exists():
                (cal / name).rename(hold / name)
    shutil.rmtree(cal)               # what the interrupted run left: partial EBs, partial calibrated.ms
    script_dir = plan.script.path.parent
    extras = [p for p in sorted(script_dir.iterdir()) if plain_name(p.name) in EXTRA_SCRIPTS]
    hidden = {p.name for p in extras} | {p.name for p in script_dir.iterdir()
                                         if any(p.name.endswith(f"{eb}{suffix}") for eb in kept
                                                for suffix in CALIBRATION_SCRIPT_SUFFIXES)}
    with DiskSampler(shadow if plan.todo else cal, interval=interval) as sampler:
        if plan.todo:
            _shadow_tree(plan, shadow, hidden)
            run_script(plan, shadow / "script" / plan.script.path.name, shadow / "script", _variables(plan),
                       casa_log, line_seen)
            (shadow / "calibrated").rename(cal)
        else:
            cal.mkdir()
        sampler.path = cal
        for p in sorted(hold.iterdir()):
            p.rename(cal / p.name)
        order = {name: i for i, name in enumerate(("scriptForPolCalibration.py", FLUX_SCRIPT,
                                                  "scriptForImagingPrep.py"))}
        for extra in sorted(extras, key=lambda p: order[plain_name(p.name)]):
            line_seen(f"Executing {extra.name} ...")
            run_script(plan, extra, cal, _variables(plan) | {"applyonly": True}, casa_log, line_seen)
        if plan.estimate.effective_level(plan.spacesaving) >= 3 and (cal / "calibrated.ms").exists():
            for eb in kept + plan.todo:
                shutil.rmtree(cal / f"{eb}.ms.split.cal", ignore_errors=True)
        line_seen('Done. Please find results in directory "calibrated".')
    shutil.rmtree(shadow, ignore_errors=True)
    hold.rmdir()
    return sampler, kept


def _shadow_tree(plan: RestorePlan, shadow: Path, hidden: set[str], raw_ebs: list[str] | None = None) -> None:
    """A tree scriptForPI runs in as in the member: ``shadow/script`` links to the member's script files
    but ``hidden``; ``calibration`` and ``product`` link to the member's; ``raw`` links to the member's
    raw/, or (``raw_ebs``) is a folder linking only those EBs' ASDMs (EBs still downloading stay out)."""
    script_dir = plan.script.path.parent
    (shadow / "script").mkdir(parents=True)
    for p in script_dir.iterdir():
        if p.name not in hidden:
            (shadow / "script" / p.name).symlink_to(p)
    for name in ("calibration", "raw", "product"):
        if name == "raw" and raw_ebs is not None:
            (shadow / "raw").mkdir()
            for eb in raw_ebs:
                (shadow / "raw" / f"{eb}.asdm.sdm").symlink_to(plan.path / "raw" / f"{eb}.asdm.sdm")
        elif (plan.path / name).exists():
            (shadow / name).symlink_to(plan.path / name)
