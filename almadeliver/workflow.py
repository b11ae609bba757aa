"""The per-MOUS workflow: fetch, restore and image one delivery from the options a user gives.

The stages do the work (``archive`` asks, ``transfer`` fetches, ``delivery`` validates, ``casa``
restores and images); this layer turns the options of a command into their calls, once, so that a
command (``almadeliver download``, ``restore``, ``image``) and a step of ``almadeliver run`` (one
MOUS on a worker, ``scale/steps.py``) run the same code with the same options. Nothing here prints:
the functions take and return the stages' dataclasses and raise the errors of ``errors.py``.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .archive.client import ArchiveClient, make_session, mirror_list
from .archive.model import ArchiveFile, ProjectView
from .casa import imaging
from .casa.recalibrate import RecalibrationResult, StepEvent, plan_recalibration, recalibrate
from .casa.restore import MISMATCH_CHOICES, RestorePlan, RestoreResult, check_options, plan_restore
from .casa.selfcal import DEFAULT_ROUNDS, RoundResult, SelfcalResult, parse_rounds, plan_selfcal, selfcal
from .delivery.layout import find_members
from .delivery.partial import record_selection
from .errors import TransferError, TreeError, UsageError
from .ids import ProjectCode, TarballKind, Uid
from .transfer.auth import Credentials, archive_hosts, login
from .transfer.download import FileResult, FileStatus, TransferConfig, TransferResult, download
from .transfer.plan import DEFAULT_WHAT, DownloadPlan, make_plan, parse_what
from .transfer.select import Cutout, FileSelection, SelectedPlan, select_files

if TYPE_CHECKING:
    from .archive.tap import Selection

log = logging.getLogger("almadeliver.workflow")

#: What ``almadeliver run`` fetches of a MOUS unless ``--what`` says otherwise: what restoring and
#: imaging need (the README of ``download``'s default lies outside the member folder the step keeps).
RUN_WHAT = "products,auxiliary,raw"


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: the options of ``almadeliver download`` that ``almadeliver run`` shares.

    Attributes
    ----------
    archive : str or None
        ``--archive``: a mirror name (eso, nrao, naoj) or URL; None for the default mirrors.
    what : str
        ``--what``: comma-separated file kinds (``transfer.plan.WHAT``).
    credentials : Credentials or None
        ``--user`` and its password, for proprietary data; None: anonymous.
    parallel : int
        Connections per archive host.
    split : int
        Byte ranges fetched at once per large file.
    files : tuple of str
        ``--files``: shell patterns on the names of the files inside the tarballs; only those files
        are fetched, each where untarring its tarball would put it. Empty: whole tarballs.
    cutout : Cutout or None
        ``--cutout``: SODA cutouts of the FITS products matching ``files`` (default ``*.pbcor.fits``),
        written beside them as ``<name>.cutout.fits``, instead of the products.
    """

    archive: str | None = None
    what: str = DEFAULT_WHAT
    credentials: Credentials | None = None
    parallel: int = 5
    split: int = 1
    files: tuple[str, ...] = ()
    cutout: Cutout | None = None

    @property
    def selection(self) -> FileSelection:
        """What of the tarballs to fetch (an empty selection: the whole tarballs)."""
        return FileSelection(tuple(self.files), self.cutout)

    @property
    def kinds(self) -> set[TarballKind]:
        """The tarball kinds ``what`` names (raises UsageError for an unknown word)."""
        return parse_what(self.what)


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: the options of ``almadeliver restore`` that ``almadeliver run`` shares.

    Attributes are the keyword arguments of ``casa.restore.plan_restore`` (see it for their values):
    ``spacesaving`` (scriptForPI's SPACESAVING, None for the lowest level that fits), ``dosplit``,
    ``casa`` (a monolithic CASA), ``engine`` (auto, native, casa), ``casa_version_mismatch`` (refuse,
    allow) and ``resume`` (keep the EBs an earlier attempt finished).
    """

    spacesaving: int | None = None
    dosplit: bool = False
    casa: str | None = None
    engine: str = "auto"
    casa_version_mismatch: str = "refuse"
    resume: bool = False

    def __post_init__(self) -> None:
        check_options(self.spacesaving, self.engine, self.casa_version_mismatch)   # before any step runs


@dataclass(frozen=True)
class ImageOptions:
    """How to image: the delivered imaging with the user's ``overrides``, read from ``source``
    (auto, pipeline, script: see ``casa.imaging.plan``)."""

    overrides: imaging.Overrides = field(default_factory=imaging.Overrides)
    source: str = "auto"


@dataclass(frozen=True)
class RecalibrateOptions:
    """How to redo a manual delivery's calibration: the options of ``almadeliver recalibrate``.

    Attributes are the keyword arguments of ``casa.recalibrate.plan_recalibration``: ``steps``
    (``"9-18"``; None: Cycle 0 from the step after the split, later cycles every step), ``from_step``,
    ``ebs`` (EB uids; empty: every EB), ``script`` (an edited calibration script, one EB),
    ``casa_version_mismatch`` (refuse, allow), ``skip_lacking`` (skip, not refuse, the steps that need
    what modular CASA lacks) and ``concat`` (then concatenate the EBs into calibrated.ms).
    """

    steps: str | None = None
    from_step: int | None = None
    ebs: tuple[str, ...] = ()
    script: Path | None = None
    casa_version_mismatch: str = "refuse"
    skip_lacking: bool = False
    concat: bool = False

    def __post_init__(self) -> None:
        if self.casa_version_mismatch not in MISMATCH_CHOICES:
            raise UsageError(f"--casa-version-mismatch {self.casa_version_mismatch} is not a choice",
                             f"use one of {', '.join(MISMATCH_CHOICES)}")


@dataclass(frozen=True)
class SelfcalOptions:
    """How to self-calibrate: the options of ``almadeliver image --selfcal``.

    Attributes
    ----------
    rounds : str
        ``MODE:SOLINT`` list (``casa.selfcal.parse_rounds``), checked when made.
    field : str or None
        The field (None: the OBSERVE_TARGET field).
    cubes : bool
        Also remake the delivered cubes with the solutions.
    """

    rounds: str = DEFAULT_ROUNDS
    field: str | None = None
    cubes: bool = True

    def __post_init__(self) -> None:
        parse_rounds(self.rounds)            # a bad round is a usage error before any step runs
        if self.field and "," in self.field:
            raise UsageError(f"--field {self.field}: self-calibration takes one field", "give one field name")


@dataclass(frozen=True)
class FetchedMous:
    """What fetching one MOUS left: its member folder in the tree, and what was transferred."""

    member: Path
    files: int
    fetched_bytes: int


# -- fetch ---------------------------------------------------------------------------------------------
def open_archive(options: FetchOptions) -> ArchiveClient:
    """A client of the options' archive, logged in when the options carry credentials.

    The login comes before any query, so that DataLink answers for this identity; the credentials
    go to the hosts of the configured archive only (``transfer.auth.archive_hosts``).

    Parameters
    ----------
    options : FetchOptions
        The archive, the credentials and the connections per host.

    Returns
    -------
    ArchiveClient
        Its session carries the credentials (when given).

    Raises
    ------
    AuthError
        The archive refused the password.
    ArchiveError
        No authentication host answered.
    """
    session = make_session(options.parallel)
    client = ArchiveClient(options.archive, session=session)
    if options.credentials:
        login(session, mirror_list(options.archive)[0], options.credentials, archive_hosts(options.archive))
    return client


def plan_fetch(targets: Selection | ProjectView, client: ArchiveClient, options: FetchOptions,
               with_sg: bool = True) -> DownloadPlan:
    """The files to fetch: those of ``options.kinds`` that the archive lists for ``targets``.

    Parameters
    ----------
    targets : Selection or ProjectView
        Project codes or MOUS uids to ask the archive about, or a project view written earlier
        (``query --format json``), whose URLs then move to ``options.archive`` when it is set.
    client : ArchiveClient
        From ``open_archive`` (logged in for proprietary data).
    options : FetchOptions
        The kinds of file (``what``) and the archive.
    with_sg : bool
        Also read each MOUS's science goal (one request per MOUS); the plan does not need it.

    Returns
    -------
    DownloadPlan
        Every distinct file, once.

    Raises
    ------
    UsageError
        ``options.what`` names an unknown kind.
    ArchiveError, NotFoundError, AuthError
        From the query stage.
    """
    from .archive.projectview import query      # astropy and pyvo: loaded when the archive is asked

    if isinstance(targets, ProjectView):
        return make_plan(targets, options.kinds, options.archive)
    return make_plan(query(targets, client, with_sg=with_sg), options.kinds)


def plan_selected(targets: Selection | ProjectView, client: ArchiveClient, options: FetchOptions) -> SelectedPlan:
    """The single files (or cutouts) of ``options.selection`` in the tarballs the archive lists for ``targets``.

    Parameters
    ----------
    targets : Selection or ProjectView
        As for ``plan_fetch``; a Selection is queried with the science goals (the files' tree paths need them).
    client : ArchiveClient
        From ``open_archive``.
    options : FetchOptions
        ``files`` and/or ``cutout`` (a non-empty selection), the kinds and the archive.

    Returns
    -------
    SelectedPlan
        The plan of single files, and the bytes of the tarballs they come from.

    Raises
    ------
    UsageError
        Nothing matches, or the selection is empty.
    ArchiveError, NotFoundError, AuthError
        From the query stage, the nested DataLink answers or the SODA service.
    """
    if not options.selection:
        raise UsageError("no files or cutout asked", "give --files PATTERN and/or --cutout")
    from .archive.projectview import query      # pyvo and astropy: only once the archive is asked

    view = targets if isinstance(targets, ProjectView) else query(targets, client, with_sg=True)
    return select_files(make_plan(view, options.kinds, options.archive), view, client, options.selection)


def fetch_selected(selected: SelectedPlan, dest: Path, config: TransferConfig, session) -> TransferResult:
    """Fetch a plan of single files with the download engine, stamp the cutouts, record the selection.

    Cutouts already on disk with the same SODA parameters in their header are not fetched again
    (the stamp changes their size, so the journal alone cannot tell). Each cutout gets the request
    in its header (``delivery.cutouts``); ``DEST/.almadeliver/selection.json`` records the patterns, the
    files and the cutout parameters (what ``validate`` reads of a partial tree).

    Parameters
    ----------
    selected : SelectedPlan
        From ``plan_selected``.
    dest : Path
        The root of the delivery tree (the files go to their tree paths under it).
    config : TransferConfig
        Connections, retries, progress bars (``untar`` does not apply: no tarball is fetched).
    session : requests.Session
        The client's session (carries the login).

    Returns
    -------
    TransferResult
        One FileResult per planned file; cutouts already done count as ``already``.

    Raises
    ------
    DiskSpaceError, TransferError
        From ``transfer.download.download``.
    """
    from .delivery.cutouts import cutout_stamped, stamp_cutout

    dest = Path(dest)
    done = [f for f in selected.plan.files if f.name in selected.cutouts
            and cutout_stamped(dest / f.name, selected.cutouts[f.name])]
    todo = [f for f in selected.plan.files if f not in done]
    plan = DownloadPlan(selected.plan.archive, todo, selected.plan.duplicates_dropped,
                        selected.plan.skipped_unreadable)
    result = download(plan, dest, config, session)
    for r in result.files:
        if r.name in selected.cutouts and r.status is not FileStatus.FAILED:
            stamp_cutout(dest / r.name, selected.cutouts[r.name])
    result.files += [FileResult(f.name, dest / f.name, f.size, FileStatus.ALREADY) for f in done]
    ok = {r.name for r in result.files if r.status is not FileStatus.FAILED}
    record_selection(dest, list(selected.selection.patterns), [f.name for f in selected.plan.files if f.name in ok],
                     {k: v for k, v in selected.cutouts.items() if k in ok})
    return result


def member_in_tree(dest: Path, project: ProjectCode, mous: Uid, cycle0: bool = False) -> Path | None:
    """The member folder of ``mous`` in the standard tree ``dest/<project>/...``, if it is there.

    Cycle 0 member folders (``member_ouss_<date>_id``) carry no uid; with ``cycle0``, one is taken as
    the MOUS's when it is the only member folder without a uid in the project's tree (a Cycle 0 project
    of one MOUS, as the steps after download find it).

    Parameters
    ----------
    dest : Path
        The download destination holding the standard tree.
    project : ProjectCode
        The project code (``2019.1.00001.S``).
    mous : Uid
        The member ObsUnitSet's uid.
    cycle0 : bool, default False
        Accept the one member folder without a uid of the project's tree as the MOUS's (Cycle 0).

    Returns
    -------
    Path | None
        The member folder, or None when the tree has none for ``mous``.
    """
    found = sorted(Path(dest).glob(f"{project}/*/*/member.{mous.disk}"))
    if found:
        return found[0]
    tree = Path(dest) / str(project)
    if not cycle0 or not tree.is_dir():
        return None
    unnamed = [m for m in find_members(tree) if m.mous is None]
    return unnamed[0].path if len(unnamed) == 1 else None


def fetch_mous(project: ProjectCode, mous: Uid, dest: Path, staging: Path, options: FetchOptions,
               gate: Callable | None = None, say: Callable[[str], None] = log.info,
               on_wave: Callable[[Path, list[FileResult], list[ArchiveFile]], None] | None = None) -> FetchedMous:
    """Fetch one MOUS through ``staging`` and move its member folder into the tree under ``dest``.

    The MOUS's files are fetched and unpacked into ``staging`` (a transfer journal of its own, so
    MOUS fetched at once never share one); its member folder then moves to ``dest/<project>/...``
    and ``staging`` is removed. A member folder already in the tree is kept as it is.

    Parameters
    ----------
    project : ProjectCode
        The MOUS's project.
    mous : Uid
        The member OUS.
    dest : Path
        The root of the delivery trees.
    staging : Path
        A folder of this MOUS's own for the transfer.
    options : FetchOptions
        Archive, kinds, credentials, connections per host.
    gate : callable, optional
        A connection gate shared by several processes (``scale.gates``), keyed by host.
    say : callable
        Receives one line per file and per action.
    on_wave : callable, optional
        Fetch in the order a restore needs the files (``download_waves``: everything but the raw
        data, then each raw tarball alone) and call ``on_wave(staging, results, files_to_come)`` after
        each wave is fetched and unpacked, before the member folder moves (``fetch_and_restore``).
        Not used with ``options.files`` or ``options.cutout``.

    Returns
    -------
    FetchedMous
        The member folder and what was transferred (0 files when it was there already).

    Raises
    ------
    TransferError
        The archive lists no file for the MOUS, or files failed (what was fetched is kept in
        ``staging``, so the next attempt resumes).
    TreeError
        The files do not unpack to one member folder of the MOUS.
    AuthError
        The password was refused (and, from the transfer, files that need a login).
    """
    member = member_in_tree(dest, project, mous)
    if member is not None:
        say(f"{member} is already there; nothing to fetch")
        return FetchedMous(member, 0, 0)
    from .archive.tap import Selection

    client = open_archive(options)
    selected = plan_selected(Selection(uids=[str(mous)]), client, options) if options.selection else None
    plan = selected.plan if selected else plan_fetch(Selection(uids=[str(mous)]), client, options, with_sg=False)
    if not plan.files:
        raise TransferError(f"the archive lists no file for {mous}",
                            "check the MOUS in the archive (query it); its data may be missing")
    say(f"fetching {len(plan.files)} files ({plan.total_bytes} bytes) from {plan.archive} into {staging}")
    if gate:
        for host in plan.hosts:      # make each host's semaphore in the task's own thread (Dask binds it
            gate(host)               # to this worker there; the engine's threads then share it)
    config = TransferConfig(parallel=options.parallel, split=options.split, progress=False, connection_gate=gate)
    if selected:
        result: TransferResult = fetch_selected(selected, staging, config, client.session)
    elif on_wave is not None:
        result = _fetch_in_waves(plan, staging, config, client.session, on_wave)
    else:
        result = download(plan, staging, config, client.session)
    for f in result.files:
        say(f"{f.status:<8} {f.name}" + (f": {f.error}" if f.error else ""))
    if not result.ok:
        raise TransferError(f"{len(result.failed)} of {len(result.files)} files failed, first: "
                            f"{result.failed[0].error}", "run the same command again to resume")
    member = _move_member(staging, dest, mous)
    if selected:                 # the tree under dest is partial: validate must know what was asked
        record_selection(dest, list(options.files), [f.name for f in plan.files], selected.cutouts)
    shutil.rmtree(staging)
    say(f"member folder {member}")
    return FetchedMous(member, len(result.files), result.fetched_bytes)


def download_waves(plan: DownloadPlan) -> list[list[ArchiveFile]]:
    """The plan's files in the order a restore needs them, in waves fetched one after the other.

    First what holds script/ and calibration/: the auxiliary tarballs and READMEs (and the products
    tarballs of the MOUS that have no auxiliary tarball: older deliveries pack everything there, and
    Cycle 0 tarballs); then each raw tarball alone, in the plan's order; last what restoring does not
    read (the products of the other MOUS: images, and external products). A raw tarball that packs
    several EBs makes them ready together (the overlap is per tarball).

    Parameters
    ----------
    plan : DownloadPlan
        The download plan of one or more MOUS.

    Returns
    -------
    list[list[ArchiveFile]]
        The waves, in the order to fetch them; every file of the plan is in one wave.
    """
    with_aux = {f.mous for f in plan.files if f.kind is TarballKind.AUXILIARY}
    first = [f for f in plan.files if f.kind in (TarballKind.AUXILIARY, TarballKind.README, TarballKind.CYCLE0)
             or (f.kind is TarballKind.PRODUCTS and f.mous not in with_aux)]
    raw = [[f] for f in plan.files if f.kind is TarballKind.RAW]
    last = [f for f in plan.files if f not in first and f.kind is not TarballKind.RAW]
    return [w for w in [first, *raw, last] if w]


def _fetch_in_waves(plan: DownloadPlan, staging: Path, config: TransferConfig, session,
                    on_wave: Callable[[Path, list[FileResult], list[ArchiveFile]], None]) -> TransferResult:
    """``download`` of each of ``download_waves(plan)`` in turn (a wave's connections steal ranges of its
    large files), ``on_wave`` after each (also after a wave with failures: what is ready on disk counts)."""
    waves = download_waves(plan)
    files: list[FileResult] = []
    seconds = 0.0
    for i, wave in enumerate(waves):
        got = download(DownloadPlan(plan.archive, wave, 0, []), staging, config, session)
        files += got.files
        seconds += got.seconds
        on_wave(staging, got.files, [f for w in waves[i + 1:] for f in w])
    return TransferResult(staging, files, seconds)


def _move_member(staging: Path, dest: Path, mous: Uid) -> Path:
    """Move the MOUS's member folder from the staging area into the tree under ``dest``."""
    mine = [m for m in find_members(staging) if m.mous == mous]
    if len(mine) != 1:
        raise TreeError(f"the files of {mous} unpack to {len(mine)} member folders of it in {staging}",
                        "validate the downloaded tree; the archive's tarballs may be incomplete")
    target = Path(dest) / mine[0].rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(mine[0].path, target)
    return target


# -- restore and image ------------------------------------------------------------------------------
def plan_member_restore(member: Path, options: RestoreOptions) -> RestorePlan:
    """How (and whether) to restore ``member`` with ``options``: ``casa.restore.plan_restore``.

    Parameters
    ----------
    member : Path
        The member folder to restore.
    options : RestoreOptions
        The restore options (SPACESAVING level, engine, CASA, resume, version-gate choice).

    Returns
    -------
    RestorePlan
        The plan; its ``refusal`` is the first reason not to run (None when it can run).

    Raises
    ------
    UsageError
        An unknown engine or mismatch choice, or a folder that is not one member folder.
    """
    return plan_restore(member, spacesaving=options.spacesaving, dosplit=options.dosplit, casa=options.casa,
                        resume=options.resume, engine=options.engine,
                        casa_version_mismatch=options.casa_version_mismatch)


def plan_member_images(member: Path, options: ImageOptions) -> imaging.ImagingPlan:
    """The images to remake in ``member`` with ``options`` (no CASA): ``casa.imaging.plan``.

    Parameters
    ----------
    member : Path
        The restored member folder.
    options : ImageOptions
        The imaging options (overrides of the delivered tclean calls, output folder).

    Returns
    -------
    imaging.ImagingPlan
        The images to make, each a tclean call with the overrides applied.

    Raises
    ------
    UsageError
        The overrides do not fit the delivery (an spw or field it does not image, ...).
    """
    return imaging.plan(member, options.overrides, options.source)


def recalibrate_member(member: Path, options: RecalibrateOptions = RecalibrateOptions(),
                       on_event: Callable[[StepEvent], None] | None = None) -> RecalibrationResult:
    """Redo the calibration of ``member`` in its working copies (``casa.recalibrate``).

    Parameters
    ----------
    member : Path
        A member folder of a manual (or Cycle 0) delivery.
    options : RecalibrateOptions
        The steps, EBs, script and choices (default: the command's defaults).
    on_event : callable, optional
        Called as each step starts and ends and when saved flags are restored.

    Returns
    -------
    RecalibrationResult
        Per EB: the steps' times and the comparison with the delivered calibration.

    Raises
    ------
    UsageError
        Bad steps or EBs, a pipeline delivery.
    CasaVersionMismatchError, CasaNotFoundError, TreeError
        The plan's refusal (raised before anything runs).
    CasaError
        A step failed.
    """
    plan = plan_recalibration(member, ebs=list(options.ebs) or None, steps=options.steps,
                              from_step=options.from_step, script=options.script,
                              casa_version_mismatch=options.casa_version_mismatch,
                              skip_lacking=options.skip_lacking)
    return recalibrate(plan, on_event=on_event, concat=options.concat)


def selfcal_member(member: Path, options: SelfcalOptions = SelfcalOptions(), out: Path | None = None,
                   on_round: Callable[[RoundResult], None] | None = None) -> SelfcalResult:
    """Self-calibrate the continuum of ``member``'s target, then remake its cubes (``casa.selfcal``).

    Parameters
    ----------
    member : Path
        A member folder whose calibrated/ holds the restored (or Cycle 0 delivered) MSs.
    options : SelfcalOptions
        Rounds, field, cubes (default: ``DEFAULT_ROUNDS`` on the target, cubes remade).
    out : Path, optional
        A new or empty folder (default ``member/selfcal``, ``selfcal.2``, ...).
    on_round : callable, optional
        Called with each round's figures as it ends.

    Returns
    -------
    SelfcalResult
        Per round figures, the final continuum against the delivered one, the cubes.

    Raises
    ------
    UsageError
        Bad rounds, or ``out`` holds files.
    TreeError
        No calibrated MS (restore first).
    CasaError
        CASA failed.
    """
    plan = plan_selfcal(member, options.rounds, field=options.field, out=out, cubes=options.cubes)
    return selfcal(plan, on_round=on_round)


# -- download and restore at once (almadeliver run --steps download,restore) ------------------------
@dataclass(frozen=True)
class OverlapEvent:
    """One moment of ``fetch_and_restore``: ``seconds`` after it started, ``what`` happened to ``name``.

    ``what`` is one of ``downloaded`` (a file fetched, verified and unpacked), ``last download`` (the
    last file of the MOUS fetched), ``eb restore started``, ``eb restore finished``, ``eb restore
    failed``, ``restore started`` and ``restore finished`` (the combining restore, scriptForPI's
    flux-calibration and imaging-prep scripts, or the whole restore when EBs could not go one by one).
    """

    seconds: float
    what: str
    name: str


@dataclass
class FetchedAndRestored:
    """What ``fetch_and_restore`` did: the fetch, the restore, and when each part happened.

    Attributes
    ----------
    fetched : FetchedMous
        The member folder and what was transferred.
    restore : RestoreResult or None
        The combining (or whole) restore; None for a Cycle 0 delivery (nothing to restore).
    early_ebs : list of str
        EBs calibrated by scriptForPI's per-EB stage while later files were still downloading.
    serial_reason : str or None
        Why the EBs were restored after the download instead (a pipeline delivery, ...); None when
        they went one by one.
    events : list of OverlapEvent
        In time order.
    """

    fetched: FetchedMous
    restore: RestoreResult | None
    early_ebs: list[str]
    serial_reason: str | None
    events: list[OverlapEvent]

    @property
    def overlapped(self) -> bool:
        """True when an EB's restore started before the last download finished (from the events)."""
        last = max((e.seconds for e in self.events if e.what == "last download"), default=None)
        starts = [e.seconds for e in self.events if e.what == "eb restore started"]
        return last is not None and any(s < last for s in starts)


class _EbRestorer:
    """Calibrates each EB of a manual delivery (scriptForPI's per-EB stage) as its files land, one at a
    time in a thread of its own, while the download goes on."""

    def __init__(self, mous: Uid, options: RestoreOptions, say: Callable[[str], None]):
        from concurrent.futures import ThreadPoolExecutor

        self.mous, self.options, self.say = mous, options, say
        self.level: int | None = options.spacesaving
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="eb-restore")
        self.submitted: dict[str, object] = {}
        self.done: list[str] = []
        self.serial_reason: str | None = None
        self.events: list[OverlapEvent] = []
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def event(self, what: str, name: str) -> None:
        with self.lock:
            self.events.append(OverlapEvent(round(time.monotonic() - self.t0, 3), what, name))

    def wave(self, staging: Path, results: list[FileResult], to_come: list[ArchiveFile]) -> None:
        """``fetch_mous``'s ``on_wave``: start the EBs now ready; after the last wave, wait for them."""
        from .casa.restore import eb_ready
        from .delivery.layout import Flavour

        for r in results:
            self.event("downloaded", r.name)
        if not to_come:
            self.event("last download", results[-1].name if results else "")
        mine = [m for m in find_members(staging) if m.mous == self.mous]
        if len(mine) == 1 and mine[0].flavour is Flavour.MANUAL and mine[0].script_for_pi:
            member = mine[0]
            for uid in member.ebs_in_scripts:
                eb = uid.disk
                if eb not in self.submitted and eb_ready(member, eb):
                    if self.level is None:
                        self.level = self._choose_level(member.path, to_come)
                    self.submitted[eb] = self.pool.submit(self._one, member.path, eb)
        elif len(mine) == 1 and mine[0].flavour is not Flavour.UNKNOWN and not self.serial_reason:
            self.serial_reason = (f"a {mine[0].flavour.value} delivery: its EBs are restored together, "
                                  "after the download")
        if not to_come:
            self.pool.shutdown(wait=True)

    def _choose_level(self, member: Path, to_come: list[ArchiveFile]) -> int:
        """The lowest SPACESAVING level that fits once every raw tarball is here (as scriptForPI picks
        it from the whole raw/): the raw data still to come counts in the need and against the free space."""
        from dataclasses import replace as _replace

        from .casa.diskspace import MB, estimate

        est = estimate(member)
        coming = -(-sum(f.size for f in to_come if f.kind is TarballKind.RAW) // MB)
        whole = _replace(est, raw_mb=est.raw_mb + coming, free_mb=est.free_mb - coming)
        best = whole.best_level()
        return 3 if best is None else best

    def _one(self, member: Path, eb: str) -> None:
        from .casa.restore import plan_eb_restore, restore_eb
        from .errors import AlmadeliverError

        self.event("eb restore started", eb)
        self.say(f"{eb}: its files are here; calibrating it (scriptForPI's per-EB stage) while the download goes on")
        try:
            plan = plan_eb_restore(member, eb, self.level, dosplit=self.options.dosplit, casa=self.options.casa,
                                   engine=self.options.engine,
                                   casa_version_mismatch=self.options.casa_version_mismatch)
            restore_eb(plan, on_line=self.say)
        except AlmadeliverError as exc:   # the combining restore calibrates it again, after the download
            self.event("eb restore failed", eb)
            self.say(f"{eb}: the per-EB stage failed ({exc.message}); it is calibrated again after the download")
            return
        self.done.append(eb)
        self.event("eb restore finished", eb)


def fetch_and_restore(project: ProjectCode, mous: Uid, dest: Path, staging: Path, fetch: FetchOptions,
                      restore_options: RestoreOptions, gate: Callable | None = None,
                      say: Callable[[str], None] = log.info) -> FetchedAndRestored:
    """Fetch one MOUS and restore it, each EB calibrated as soon as its files are here.

    The files come in ``download_waves`` order (scripts and calibration first, then each raw tarball,
    the products last).
    For a manual delivery, each EB whose ASDM, calibration script and calibration/ are unpacked is
    calibrated by scriptForPI's per-EB stage (``casa.restore.restore_eb``: the delivery's scriptForPI
    in a shadow tree holding this EB alone) while the later EBs download; once the member folder is
    in the tree, ``restore`` with ``resume`` keeps those EBs, calibrates any that failed, and runs the
    combining scripts (flux calibration, concatenation into calibrated.ms, SPACESAVING 3), as
    scriptForPI would. Pipeline deliveries (one ``hifa_restoredata`` for every EB) and a member
    already in the tree are restored after the download, as ``serial_reason`` says. The result is the
    serial run's: the same scripts run on the same data, at the same SPACESAVING level.

    Parameters
    ----------
    project, mous, dest, staging, fetch, gate, say
        As for ``fetch_mous``.
    restore_options : RestoreOptions
        As for ``plan_member_restore`` (``resume`` is always on: the EBs calibrated early are kept).

    Returns
    -------
    FetchedAndRestored
        The fetch, the restore, the EBs calibrated early and the timeline.

    Raises
    ------
    TransferError, TreeError, AuthError
        From ``fetch_mous``.
    CasaError, CasaNotFoundError, CasaVersionMismatchError, DiskSpaceError, UsageError
        The combining restore's refusal or failure (the EBs already calibrated stay in calibrated/).
    """
    from dataclasses import replace as _replace

    from .casa.restore import restore

    eb_restorer = _EbRestorer(mous, restore_options, say)
    try:
        fetched = fetch_mous(project, mous, dest, staging, fetch, gate, say, on_wave=eb_restorer.wave)
    finally:
        eb_restorer.pool.shutdown(wait=True)
    reason = eb_restorer.serial_reason or (None if eb_restorer.submitted else
                                           "no EB was ready before the download ended (or the member was there)")
    options = _replace(restore_options, resume=True,
                       spacesaving=eb_restorer.level if eb_restorer.level is not None else restore_options.spacesaving)
    plan = plan_member_restore(fetched.member, options)
    if plan.already_calibrated:
        return FetchedAndRestored(fetched, None, [], "Cycle 0: calibrated/ already holds the calibrated MSs",
                                  eb_restorer.events)
    plan.check()
    eb_restorer.event("restore started", "combining" if plan.finished else "all EBs")
    say(f"running {plan.script.path.name if plan.script else 'scriptForPI.py'} with SPACESAVING={plan.spacesaving}"
        + (f", keeping the {len(plan.finished)} EBs calibrated during the download" if plan.finished else ""))
    result = restore(plan, on_line=say)
    eb_restorer.event("restore finished", "combining" if plan.finished else "all EBs")
    return FetchedAndRestored(fetched, result, list(eb_restorer.done), reason, eb_restorer.events)
