"""Native pipeline restore: what ``hifa_restoredata`` does, with pip-installed modular CASA.

Pipeline deliveries restore through ``casa_piperestorescript.py`` (``hifa_restoredata``), which
ships only with monolithic CASA started with ``--pipeline``. ``native_restore`` does the same
steps (ALMA-FACTS.md section 4) with casatasks:

1. checks, before anything is written: every EB's ``<EB>.ms.calapply.txt`` parses (never eval'd),
   its pipeline intents map to MS intents, every table it names is in a ``*.caltables.tgz``, its
   ``<EB>.ms.flagversions.tgz`` and raw ASDM are there, and the disk need of SPACESAVING fits;
2. lays out ``calibrated/`` as scriptForPI does: ``rawdata/<EB>`` -> ``../../raw/<EB>.asdm.sdm``,
   ``products -> ../calibration``, ``working/`` (the caltables extracted there);
3. in a CASA child, in ``working/``: importasdm with the pipeline's options, extract the
   flagversions and restore ``Pipeline_Final``, one applycal per calapply line (intents mapped,
   table paths rewritten to ``working/``), split the science spws to ``calibrated/<EB>.ms.split.cal``;
   SPACESAVING >= 2 then removes ``working/<EB>.ms`` (there is no ``*.ms.split`` in a pipeline
   restore, so level 1 removes nothing). Every call is written to ``working/casa_commands.log``.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..delivery.calapply import ApplyCal, read_calapply
from ..delivery.layout import Flavour, Member, find_members, plain_name
from ..errors import DiskSpaceError, TreeError, UsageError
from .diskspace import estimate
from .runtime import run_in_casa

#: importasdm options of hifa_importdata / hifa_restoredata.
IMPORT_OPTIONS = dict(createmms=False, ocorr_mode="ca", lazy=False,
                      asis="Antenna Station Receiver Source CalAtmosphere CalWVR CorrelatorMode SBSummary",
                      process_caldevice=False, bdfflags=True, with_pointing_correction=True)
FINAL_FLAGS = "Pipeline_Final"
COMMANDS_LOG = "casa_commands.log"


@dataclass
class EbRestore:
    """One EB to restore: its ASDM, delivery files and the applycal calls to run."""

    eb: str
    asdm: Path
    calapply: Path
    flagversions: Path
    calls: list[ApplyCal]


@dataclass
class NativeRestorePlan:
    """Everything checked before anything is written."""

    member: Member
    ebs: list[EbRestore]
    caltables: list[Path]                     # the *.caltables.tgz to extract
    tables: dict[str, Path] = field(default_factory=dict)   # table name -> tgz holding it
    skipped: list[str] = field(default_factory=list)       # ASDMs in raw/ without calapply.txt (semipass)

    @property
    def calibrated(self) -> Path:
        return self.member.path / "calibrated"


@dataclass
class NativeRestoreResult:
    """What ``native_restore`` made."""

    calibrated: Path
    split_cal: list[Path]
    working_ms: list[Path]                    # kept in working/ (SPACESAVING < 2)
    commands_log: Path
    casa_log: Path
    applycal_calls: int
    spacesaving: int
    skipped: list[str]
    seconds: float


def _member(member: Member | str | Path) -> Member:
    if isinstance(member, Member):
        return member
    found = find_members(member)
    if len(found) != 1:
        raise UsageError(f"{member} holds {len(found)} member folders", "give one member folder (member.uid___...)")
    return found[0]


def _find(folder: Path, suffix: str) -> Path | None:
    """``<name><suffix>`` in folder, with or without the pipeline's ``member.<MOUS>.`` prefix."""
    for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        if plain_name(path.name) == suffix.lstrip("."):
            return path
    return None


def _tgz_tables(tgz: Path) -> set[str]:
    """The top-level names (the caltables) in a caltables tarball."""
    try:
        with tarfile.open(tgz) as tar:
            return {m.name.lstrip("./").split("/", 1)[0] for m in tar.getmembers() if m.name.strip("./")}
    except (tarfile.TarError, OSError) as exc:
        raise TreeError(f"{tgz} is not a readable tarball ({exc})",
                        "fetch the auxiliary tarball of this member again") from None


def plan_native_restore(member: Member | str | Path) -> NativeRestorePlan:
    """Check a pipeline member can be restored natively; raises a typed error naming what is missing."""
    m = _member(member)
    if m.flavour is not Flavour.PIPELINE:
        raise UsageError(f"{m.path} is a {m.flavour.value} delivery, not a pipeline one",
                         "the native engine restores pipeline deliveries; use --engine casa")
    cal = m.path / "calibration"
    raw = {eb.disk for eb in m.ebs_in_raw}
    ebs: list[EbRestore] = []
    for uid in m.ebs_in_scripts:
        eb = uid.disk
        calapply = _find(cal, f"{eb}.ms.calapply.txt")
        if calapply is None:
            raise TreeError(f"calibration/{eb}.ms.calapply.txt is missing (the applycal calls of EB {eb})",
                            "fetch the auxiliary tarball of this member again")
        flagversions = _find(cal, f"{eb}.ms.flagversions.tgz")
        if flagversions is None:
            raise TreeError(f"calibration/{eb}.ms.flagversions.tgz is missing (the {FINAL_FLAGS} flags of EB {eb})",
                            "fetch the auxiliary tarball of this member again")
        if eb not in raw:
            raise TreeError(f"raw/{eb}.asdm.sdm is missing", f"fetch {m.raw_tarball(uid)} and untar it at the top of the tree")
        calls = read_calapply(calapply)
        for call in calls:
            call.ms_intents()  # unknown pipeline intents fail here, with the line number
        ebs.append(EbRestore(eb, m.path / "raw" / f"{eb}.asdm.sdm", calapply, flagversions, calls))
    if not ebs:
        raise TreeError(f"no <EB>.ms.calapply.txt in {cal}", "fetch the auxiliary tarball of this member again")
    tgzs = sorted(p for p in cal.glob("*.caltables.tgz")) if cal.is_dir() else []
    tables: dict[str, Path] = {}
    for tgz in tgzs:
        for name in _tgz_tables(tgz):
            tables.setdefault(name, tgz)
    for e in ebs:
        for call in e.calls:
            for table in call.gaintable:
                if os.path.basename(table.rstrip("/")) not in tables:
                    where = ", ".join(p.name for p in tgzs) or "no *.caltables.tgz in calibration/"
                    raise TreeError(f"{e.calapply.name}:{call.line}: calibration table "
                                    f"{os.path.basename(table.rstrip('/'))} is missing (searched {where})",
                                    "fetch the auxiliary tarball of this member again")
    skipped = sorted(raw - {e.eb for e in ebs})
    return NativeRestorePlan(m, ebs, tgzs, tables, skipped)


def applycal_kwargs(call: ApplyCal, eb: str) -> dict[str, Any]:
    """The applycal arguments of a calapply line for ``working/``: MS intents, local table paths."""
    kwargs: dict[str, Any] = dict(vis=f"{eb}.ms", field=call.field, intent=call.ms_intents(), spw=call.spw,
                                  antenna=call.antenna,
                                  gaintable=[os.path.basename(t.rstrip("/")) for t in call.gaintable])
    for name in ("gainfield", "spwmap", "interp", "calwt"):
        if getattr(call, name):
            kwargs[name] = getattr(call, name)
    kwargs.update(call.other)
    kwargs["flagbackup"] = False
    return kwargs


def _extract(tgz: Path, dest: Path) -> None:
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")


def native_restore(member: Member | str | Path, spacesaving: int = 0, *, dosplit: bool = True,
                   on_line: Callable[[str], None] | None = None) -> NativeRestoreResult:
    """Restore a pipeline delivery with modular CASA (see the module doc); returns what was made."""
    if spacesaving not in (0, 1, 2, 3, -1):
        raise UsageError(f"SPACESAVING {spacesaving} is not a level", "use 0, 1, 2, 3 or -1 (no disk check)")
    started = time.monotonic()
    plan = plan_native_restore(member)
    calibrated = plan.calibrated
    if calibrated.exists():
        raise TreeError(f"{calibrated} already exists (scriptForPI stops when it does)",
                        "move it away to restore again")
    est = estimate(plan.member.path)
    if not est.fits(spacesaving):
        raise DiskSpaceError(f"not enough free disk space on {est.target}: SPACESAVING {spacesaving} needs "
                             f"{est.need_mb(spacesaving)} MB, {est.free_mb} MB free",
                             "free some space, use a higher --spacesaving level, or -1 to skip the check")
    working = calibrated / "working"
    (calibrated / "rawdata").mkdir(parents=True)
    working.mkdir()
    (calibrated / "products").symlink_to("../calibration")
    for e in plan.ebs:
        (calibrated / "rawdata" / e.eb).symlink_to(f"../../raw/{e.eb}.asdm.sdm")
    for tgz in plan.caltables:
        _extract(tgz, working)
    work = [{"eb": e.eb, "flagversions": str(e.flagversions.resolve()),
             "applycal": [applycal_kwargs(c, e.eb) for c in e.calls]} for e in plan.ebs]
    casa_log = working / "casa.log"
    out = run_in_casa("almadeliver.casa.native_restore:restore_in_casa",
                      {"ebs": work, "spacesaving": spacesaving, "dosplit": dosplit},
                      workdir=working, logfile=casa_log, on_line=on_line)
    return NativeRestoreResult(
        calibrated=calibrated, split_cal=[calibrated / p for p in out["split"]],
        working_ms=[working / p for p in out["kept"]], commands_log=working / COMMANDS_LOG, casa_log=casa_log,
        applycal_calls=sum(len(e.calls) for e in plan.ebs), spacesaving=spacesaving, skipped=plan.skipped,
        seconds=time.monotonic() - started)


def restore_in_casa(ebs: list[dict], spacesaving: int, dosplit: bool) -> dict:
    """CASA side, in ``calibrated/working``: import, Pipeline_Final, applycal, split, SPACESAVING."""
    import casatools

    from .commands import CommandRecorder

    run = CommandRecorder()
    split, kept = [], []
    try:
        for eb in ebs:
            uid, vis = eb["eb"], f"{eb['eb']}.ms"
            run.stage(f"hifa_restoredata: {uid}")
            run("importasdm", asdm=f"../rawdata/{uid}", vis=vis, savecmds=True, outfile=f"{uid}.flagonline.txt",
                overwrite=False, **IMPORT_OPTIONS)
            shutil.rmtree(f"{vis}.flagversions", ignore_errors=True)
            run.stage(f"extract {Path(eb['flagversions']).name}")
            _extract(Path(eb["flagversions"]), Path.cwd())
            if not Path(f"{vis}.flagversions").is_dir():
                raise TreeError(f"{Path(eb['flagversions']).name} does not hold {vis}.flagversions",
                                "fetch the auxiliary tarball of this member again")
            run("flagmanager", vis=vis, mode="restore", versionname=FINAL_FLAGS, merge="replace")
            for kwargs in eb["applycal"]:
                run("applycal", **kwargs)
            if not dosplit:
                kept.append(vis)
                continue
            msmd = casatools.msmetadata()
            msmd.open(vis)
            science = ",".join(str(s) for s in sorted(msmd.spwsforintent("OBSERVE_TARGET#ON_SOURCE")))
            msmd.close()
            run("split", vis=vis, outputvis=f"../{vis}.split.cal", spw=science, datacolumn="corrected",
                keepflags=True)
            split.append(f"{vis}.split.cal")
            if spacesaving >= 2:
                run("rmtables", tablenames=vis)
                shutil.rmtree(f"{vis}.flagversions", ignore_errors=True)
            else:
                kept.append(vis)
    finally:
        run.write(Path(COMMANDS_LOG))
    return {"split": split, "kept": kept}
