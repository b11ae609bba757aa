"""Native pipeline restore: what ``hifa_restoredata`` does, with pip-installed modular CASA.

Pipeline deliveries restore through ``casa_piperestorescript.py`` (``hifa_restoredata``), which
ships only with monolithic CASA started with ``--pipeline``. ``native_restore`` does the same
steps (ALMA-FACTS.md section 4) with casatasks:

0. reads the restore script whole (``read_restore_script``, never executed): it must call
   ``hifa_restoredata`` (interferometer data, ``ocorr_mode='ca'``); any other recipe, such as Total
   Power's ``hsd_restoredata``, is refused before anything runs (it needs monolithic CASA with the
   pipeline), and every other statement (an extra ``hifa_importdata(bdfflags=False)``, a
   ``fixsyscaltimes`` call) is reported as a warning: the native engine does not run it;
1. checks, before anything is written: every EB's ``<EB>.ms.calapply.txt`` parses (never eval'd),
   its pipeline intents map to MS intents, every table it names is in a ``*.caltables.tgz``, its
   ``<EB>.ms.flagversions.tgz`` and raw ASDM are there, and the disk need of SPACESAVING fits;
2. lays out ``calibrated/`` as scriptForPI does: ``rawdata/<EB>`` -> ``../../raw/<EB>.asdm.sdm``,
   ``products -> ../calibration``, ``working/`` (the caltables extracted there);
3. in a CASA child, in ``working/``: importasdm with the pipeline's options, extract the
   flagversions and restore ``Pipeline_Final``, one applycal per calapply line (intents mapped,
   table paths rewritten to ``working/``);
4. then leaves what scriptForPI v2.x leaves [ALMA-FACTS.md section 4]: when only pipeline imaging was
   done (no ``scriptForImaging.py``) and DOSPLIT is off, ``calibrated/<EB>.ms`` links to
   ``working/<EB>.ms``; with DOSPLIT, or always when the MOUS was imaged manually, it splits
   ``calibrated/<EB>.ms.split.cal`` (mstransform, CORRECTED_DATA to DATA) keeping the
   ``OBSERVE_TARGET*`` spws with more than 4 channels (no WVR, no channel-average spws), and re-indexes
   the spws only when the EBs' science spws differ. SPACESAVING >= 2 then removes the split EBs'
   ``working/<EB>.ms`` (there is no ``*.ms.split`` in a pipeline restore, so level 1 removes nothing).
   Every call is written to ``working/casa_commands.log`` (``image`` reads the split's spw numbering
   from it).
"""
from __future__ import annotations

import ast
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..delivery.calapply import ApplyCal, read_calapply
from ..delivery.layout import Flavour, Member, find_members, plain_name
from ..errors import CasaNotFoundError, DiskSpaceError, TreeError, UsageError
from .diskspace import estimate
from .runtime import run_in_casa

#: importasdm options of hifa_importdata / hifa_restoredata.
IMPORT_OPTIONS = dict(createmms=False, ocorr_mode="ca", lazy=False,
                      asis="Antenna Station Receiver Source CalAtmosphere CalWVR CorrelatorMode SBSummary",
                      process_caldevice=False, bdfflags=True, with_pointing_correction=True)
FINAL_FLAGS = "Pipeline_Final"
COMMANDS_LOG = "casa_commands.log"
MIN_SCIENCE_CHANNELS = 5   # scriptForPI v2.x keeps OBSERVE_TARGET spws with more than 4 channels

#: The pipeline's restore tasks and the data they restore; the native engine does hifa_restoredata only.
RESTORE_TASKS = {"hifa_restoredata": ("hifa_calimage", "interferometer (ALMA 12m/7m)"),
                 "hsd_restoredata": ("hsd_calimage", "Total Power (single-dish autocorrelations)"),
                 "hifv_restoredata": ("hifv_calimage", "VLA"),
                 "hsdn_restoredata": ("hsdn_calimage", "Nobeyama single-dish")}
NATIVE_TASK = "hifa_restoredata"
#: Statements of the pipeline's restore script wrapper that restore nothing themselves.
_FRAMEWORK = {"h_init", "h_save", "h_resume"}
#: hifa_restoredata arguments the native engine does what they say for (others are reported).
_HONOURED = {"vis", "session"}


@dataclass
class RestoreScript:
    """What a ``casa_piperestorescript.py`` asks for, read with ``ast`` (never executed)."""

    path: Path
    task: str | None                          # the restore task it calls (hifa_restoredata, hsd_restoredata)
    kwargs: dict[str, Any] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)   # "<file>:<line>: <statement>" the native engine skips

    @property
    def recipe(self) -> str:
        """The pipeline recipe the restore script names (e.g. ``hifa_restoredata``)."""
        return RESTORE_TASKS.get(self.task or "", (self.task or "no restore task", ""))[0]

    def native_refusal(self) -> CasaNotFoundError | None:
        """Why the native engine cannot restore with this script (None: it can).

        Returns
        -------
        CasaNotFoundError | None
            The error to raise, or None.
        """
        if self.task == NATIVE_TASK and self.kwargs.get("ocorr_mode", "ca") == "ca":
            return None
        if self.task is None:
            what = "calls no pipeline restore task"
        elif self.task == NATIVE_TASK:
            what = f"calls {self.task} with ocorr_mode={self.kwargs.get('ocorr_mode')!r} (the native engine imports cross-correlations, 'ca')"
        else:
            what = (f"calls {self.task} (recipe {self.recipe}, {RESTORE_TASKS.get(self.task, ('', 'unknown data'))[1]} "
                    "data), which the native engine does not restore")
        return CasaNotFoundError(f"{self.path.name} {what}: this needs monolithic CASA with the pipeline",
                                 "install the CASA release the README names with the pipeline and run "
                                 "almadeliver restore --engine casa --casa PATH")


def _statement(text: str, node: ast.AST) -> str:
    seg = (ast.get_source_segment(text, node) or "").strip()
    seg = " ".join(seg.split())
    return seg if len(seg) <= 120 else seg[:117] + "..."


def read_restore_script(path: Path) -> RestoreScript:
    """Read a pipeline restore script whole: its restore task and arguments, and every statement the
    native engine will not run (``not_run``). The ``__rethrow_casa_exceptions``/``h_init``/``h_save``
    wrapper and ``try``/``finally`` are the pipeline's frame and restore nothing; anything else (an
    extra ``hifa_importdata(bdfflags=False)``, ``fixsyscaltimes(...)``, imports, assignments) is listed,
    as are restore-task arguments other than ``vis``, ``session`` and ``ocorr_mode='ca'``.

    Parameters
    ----------
    path : Path
        The ``*casa_piperestorescript.py`` file.

    Returns
    -------
    RestoreScript
        The restore task, its arguments and the statements not run.

    Raises
    ------
    ParseError
        When the script is not valid Python 3.
    """
    from ..errors import ParseError

    path = Path(path)
    text = path.read_text(errors="replace")
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ParseError(f"{path.name}:{exc.lineno}: not valid Python ({exc.msg})",
                         "fetch the auxiliary tarball of this member again") from None
    out = RestoreScript(path, None)

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
                continue
            call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
            name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else None
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__rethrow_casa_exceptions"]:
                continue
            if name in _FRAMEWORK:
                continue
            if isinstance(node, ast.Expr) and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "context" \
                    and call.func.attr == "set_state":
                continue
            if name in RESTORE_TASKS and out.task is None:
                out.task = name
                for kw in call.keywords:
                    try:
                        out.kwargs[kw.arg or "**"] = ast.literal_eval(kw.value)
                    except ValueError:
                        out.kwargs[kw.arg or "**"] = _statement(text, kw.value)
                for key, value in out.kwargs.items():
                    if key not in _HONOURED and not (key == "ocorr_mode" and value == "ca"):
                        out.not_run.append(f"{path.name}:{node.lineno}: {name} argument {key}={value!r} "
                                           "is not applied by the native engine")
                continue
            out.not_run.append(f"{path.name}:{node.lineno}: {_statement(text, node)}")

    visit(tree.body)
    return out


def restore_script(member: Member) -> RestoreScript | None:
    """The member's ``*casa_piperestorescript.py``, read (None when there is none).

    Parameters
    ----------
    member : Member
        The member folder.

    Returns
    -------
    RestoreScript | None
        The script read, or None.
    """
    found = sorted((member.path / "script").glob("*casa_piperestorescript.py"))
    return read_restore_script(found[0]) if found else None


def imaged_manually(member: Member) -> bool:
    """A pipeline-calibrated MOUS imaged by hand ships a ``scriptForImaging.py`` (scriptForPI then always splits).

    Parameters
    ----------
    member : Member
        The member folder.

    Returns
    -------
    bool
        True when script/ has a scriptForImaging.py.
    """
    return any((member.path / "script").glob("*scriptForImaging*.py"))


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
    warnings: list[str] = field(default_factory=list)      # restore-script statements not run
    imaged_manually: bool = False                          # script/ has a scriptForImaging.py

    @property
    def calibrated(self) -> Path:
        """The member's ``calibrated/`` folder."""
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
    linked: list[Path] = field(default_factory=list)      # calibrated/<EB>.ms -> working/<EB>.ms
    warnings: list[str] = field(default_factory=list)     # restore-script statements not run
    reindexed: bool = False                               # the split renumbered the spws


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
    """Check a pipeline member can be restored natively; raises a typed error naming what is missing.

    Parameters
    ----------
    member : Member | str | Path
        The pipeline member (or its folder).

    Returns
    -------
    NativeRestorePlan
        The EBs, their calibration tables and what is skipped.

    Raises
    ------
    UsageError
        The member is not a pipeline delivery.
    TreeError
        The restore script, an EB's calapply.txt, flag versions, calibration table or ASDM is missing.
    """
    m = _member(member)
    if m.flavour is not Flavour.PIPELINE:
        raise UsageError(f"{m.path} is a {m.flavour.value} delivery, not a pipeline one",
                         "the native engine restores pipeline deliveries; use --engine casa")
    script = restore_script(m)
    if script is None:
        raise TreeError(f"{m.path / 'script'} has no casa_piperestorescript.py (the pipeline's restore recipe)",
                        "fetch the auxiliary tarball of this member again")
    refusal = script.native_refusal()
    if refusal is not None:
        raise refusal
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
    return NativeRestorePlan(m, ebs, tgzs, tables, skipped, warnings=list(script.not_run),
                             imaged_manually=imaged_manually(m))


def applycal_kwargs(call: ApplyCal, eb: str) -> dict[str, Any]:
    """The applycal arguments of a calapply line for ``working/``: MS intents, local table paths.

    Parameters
    ----------
    call : ApplyCal
        A calapply.txt line.
    eb : str
        The EB (``uid___...``).

    Returns
    -------
    dict[str, Any]
        The applycal arguments.
    """
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
    """Restore a pipeline delivery with modular CASA (see the module doc); returns what was made.

    Parameters
    ----------
    member : Member | str | Path
        The pipeline member (or its folder).
    spacesaving : int, default 0
        scriptForPI's SPACESAVING level (0, 1, 2, 3).
    dosplit : bool, default True
        Split the calibrated science data to ``<EB>.ms.split.cal``.
    on_line : Callable[[str], None] | None, default None
        Called with each line the CASA child prints.

    Returns
    -------
    NativeRestoreResult
        The MSs made, the CASA log and the time taken (s).

    Raises
    ------
    UsageError
        ``spacesaving`` is not a level.
    TreeError
        calibrated/ exists already, or a file the plan needs is missing (``plan_native_restore``).
    DiskSpaceError
        The free space is less than scriptForPI's estimate at ``spacesaving``.
    """
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
    split = dosplit or plan.imaged_manually
    out = run_in_casa(restore_in_casa,
                      {"ebs": work, "spacesaving": spacesaving, "dosplit": split},
                      workdir=working, logfile=casa_log, on_line=on_line)
    linked = []
    for vis in out["link"]:   # scriptForPI v2.x: calibrated/<EB>.ms -> working/<EB>.ms
        (calibrated / vis).symlink_to(f"working/{vis}")
        linked.append(calibrated / vis)
    return NativeRestoreResult(
        calibrated=calibrated, split_cal=[calibrated / p for p in out["split"]],
        working_ms=[working / p for p in out["kept"]], commands_log=working / COMMANDS_LOG, casa_log=casa_log,
        applycal_calls=sum(len(e.calls) for e in plan.ebs), spacesaving=spacesaving, skipped=plan.skipped,
        seconds=time.monotonic() - started, linked=linked, warnings=plan.warnings, reindexed=out["reindex"])


def science_spws(vis: str) -> list[int]:
    """CASA side: scriptForPI v2.x's science spws of an MS, the ``OBSERVE_TARGET*`` spws with more than 4
    channels (WVR: 4 channels, channel averages: 1).

    Parameters
    ----------
    vis : str
        The MS path.

    Returns
    -------
    list[int]
        The science spw ids.
    """
    import casatools

    msmd = casatools.msmetadata()
    msmd.open(vis)
    try:
        return sorted(int(s) for s in msmd.spwsforintent("OBSERVE_TARGET*") if msmd.nchan(int(s)) >= MIN_SCIENCE_CHANNELS)
    finally:
        msmd.close()


def restore_in_casa(ebs: list[dict], spacesaving: int, dosplit: bool) -> dict:
    """CASA side, in ``calibrated/working``: import, Pipeline_Final, applycal; then split (``dosplit``)
    or name the MSs to link; SPACESAVING.

    Parameters
    ----------
    ebs : list[dict]
        Per EB: ``eb`` (uid), ``applycal`` (the calls' arguments) and ``flagversions``.
    spacesaving : int
        scriptForPI's SPACESAVING level.
    dosplit : bool
        Split the calibrated science data.

    Returns
    -------
    dict
        ``split``, ``kept``, ``link`` (MSs to link into calibrated/) and ``reindex``.

    Raises
    ------
    TreeError
        An EB's flag versions tarball does not hold its ``<EB>.ms.flagversions``.
    """
    from .commands import CommandRecorder

    run = CommandRecorder()
    split, kept, link = [], [], []
    reindex = False
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
        mss = [f"{eb['eb']}.ms" for eb in ebs]
        if not dosplit:
            return {"split": [], "kept": mss, "link": mss, "reindex": False}
        science = {vis: science_spws(vis) for vis in mss}
        # scriptForPI v2.x re-indexes only when the EBs' science spws differ
        reindex = len({tuple(v) for v in science.values()}) > 1
        for vis in mss:
            run.stage(f"scriptForPI split: {vis}")
            run("mstransform", vis=vis, outputvis=f"../{vis}.split.cal", spw=",".join(map(str, science[vis])),
                datacolumn="corrected", reindex=reindex, keepflags=True)
            split.append(f"{vis}.split.cal")
            if spacesaving >= 2:
                run("rmtables", tablenames=vis)
                shutil.rmtree(f"{vis}.flagversions", ignore_errors=True)
            else:
                kept.append(vis)
    finally:
        run.write(Path(COMMANDS_LOG))
    return {"split": split, "kept": kept, "link": link, "reindex": reindex}
