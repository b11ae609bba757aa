"""The Python API: the verbs of the command line, each returning the dataclass the command prints.

``almadeliver.query``, ``download``, ``validate``, ``restore``, ``image``, ``package`` and ``run``
are thin calls into the workflow layer (``almadeliver.workflow``) and the stage modules; nothing
here prints. They take what astronomers hold: ``astropy.coordinates.SkyCoord`` for a position,
``astropy.units.Quantity`` for radii and frequencies, ``pathlib.Path`` (or text) for folders, and a
``ProjectView`` (or the JSON plan ``query --format json`` writes) for what to download.

Importing ``almadeliver`` imports none of this until a verb is first used, and no CASA until a CASA
step runs (CASA work runs in a child Python, ``almadeliver.casa.runtime.run_in_casa``).

Examples
--------
>>> import almadeliver as ad
>>> view = ad.query("2017.1.00123.S")                            # doctest: +SKIP
>>> print(view.to_table())                                       # doctest: +SKIP
>>> done = ad.download(view, "data", what="products,auxiliary")  # doctest: +SKIP
>>> ad.validate("data/2017.1.00123.S").ok()                      # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:  # the annotations only; the modules are imported by each call
    from .archive.model import ProjectView
    from .casa.imaging import ImagingPlan, ImagingResult
    from .casa.restore import Progress, RestorePlan, RestoreResult
    from .delivery.report import Report
    from .packaging.package import PackageResult
    from .scale.run import RunResult, StepOutcome
    from .transfer.download import TransferResult

__all__ = ["query", "download", "validate", "restore", "image", "package", "run"]


def _text(value: Any, unit: str) -> str:
    """A Quantity as text in ``unit`` (``'30.0arcsec'``); text and numbers pass as they are."""
    if hasattr(value, "to_value"):
        return f"{float(value.to_value(unit))!r}{unit}"
    return str(value)


def _frequency_text(value: Any) -> str:
    """A frequency (Quantity, or a pair of them for a range) as ``query --freq`` text, in GHz.

    A wavelength Quantity is converted with the spectral equivalency."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{_frequency_text(value[0])[:-3]}..{_frequency_text(value[1])}"
    if hasattr(value, "to_value"):
        from astropy import units as u

        return f"{float(value.to_value(u.GHz, equivalencies=u.spectral()))!r}GHz"
    return str(value)


def query(*ids: str, target: Any = None, radius: Any = "1arcmin", band: int | Iterable[int] | None = None,
          freq: Any = None, line: str | Sequence[str] | None = None, z: float | None = None,
          public: bool | None = None, start: str | None = None, end: str | None = None,
          keyword: str | None = None, where: Sequence[str] = (), archive: str | None = None) -> "ProjectView":
    """Ask the archive (TAP, then DataLink per MOUS) and answer in the project view.

    The same conditions as ``almadeliver query``, ANDed.

    Parameters
    ----------
    *ids : str
        Project codes (wildcards ``*`` ``?``: ``2013.1.*.S``) and MOUS or GOUS uids (either form,
        ``uid://A001/X13e/X1fe`` or ``uid___A001_X13e_X1fe``).
    target : SkyCoord or str, optional
        The centre of a cone: a ``SkyCoord`` (any frame; ICRS is asked), or a name resolved by
        astropy (Sesame, needs the network).
    radius : Quantity or str
        Cone radius, an angle (``30 * u.arcsec``, ``'1arcmin'``; a bare number is degrees).
    band : int or list of int, optional
        ALMA receiver bands (1-10).
    freq : Quantity or (Quantity, Quantity) or str, optional
        Sky frequency (or wavelength) a spectral window must cover, or a range: ``230.5 * u.GHz``,
        ``(84 * u.GHz, 116 * u.GHz)``, ``'1.3mm'``.
    line : str or list of str, optional
        Lines a spectral window must cover: ``'CO(2-1)'`` (built-in table) or a rest frequency.
    z : float, optional
        Redshift of ``line`` (observed = rest / (1 + z)).
    public : bool, optional
        True: only public data; False: only proprietary data.
    start, end : str, optional
        Observed on or after / on or before this ISO date (``'2016-10-01'``).
    keyword : str, optional
        Science keyword (substring, any case).
    where : list of str
        Raw ADQL conditions on ``ivoa.obscore``.
    archive : str, optional
        A mirror (eso, nrao, naoj) or URL; default ``$ALMADELIVER_ARCHIVE``, else almascience.org.

    Returns
    -------
    ProjectView
        Projects, their MOUS and files (each once); ``.to_table()`` gives the science table (one
        row per MOUS, ObsCore names and units), ``.to_json()`` the plan ``download`` reads.

    Raises
    ------
    almadeliver.errors.UsageError
        Nothing to ask for, or a position, radius, band or frequency that is not one.
    almadeliver.errors.NotFoundError
        Nothing in the archive matches (the message names the condition that emptied the answer).
    almadeliver.errors.ArchiveError
        No mirror answered (``ArchiveUnreachable``) or the archive refused the query (``QueryError``).

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> import astropy.units as u
    >>> view = query(target=SkyCoord(83.82, -5.39, unit="deg"), radius=30 * u.arcsec,
    ...              band=6)                                           # doctest: +SKIP
    """
    from .archive.client import ARCHIVE_ENV, ArchiveClient
    from .archive.science import Limits, science_query, spectral_requests
    from .archive.tap import Selection, cone_of, resolve_target

    region = None
    if target is not None:
        region = (resolve_target(target, _text(radius, "arcsec")) if isinstance(target, str)
                  else cone_of(target, radius))
    bands = [band] if isinstance(band, int) else list(band or [])
    freqs = [] if freq is None else [_frequency_text(f) for f in (freq if isinstance(freq, list) else [freq])]
    lines = [line] if isinstance(line, str) else list(line or [])
    selection = Selection.from_ids(list(ids), cone=region, bands=bands, public=public, start=start, end=end,
                                   keyword=keyword, where=list(where))
    requests = spectral_requests(freqs, lines, z) if freqs or lines else []
    result = science_query(selection, ArchiveClient(archive or os.environ.get(ARCHIVE_ENV)), requests, Limits())
    view = result.view
    view.science = result     # for to_table(); not part of the JSON plan
    return view


def download(plan_or_ids: "ProjectView | str | Path | Sequence[str]", dest: str | Path, *,
             what: str | None = None, archive: str | None = None, user: str | None = None,
             parallel: int = 5, split: int = 1, untar: bool = True, keep_tars: bool = False,
             progress: bool = False) -> "TransferResult":
    """Fetch what a project view lists (parallel, resumable, verified) and unpack the delivery tree.

    Parameters
    ----------
    plan_or_ids : ProjectView, Path, str or list of str
        A view from ``query``; the JSON plan ``query --format json`` wrote (a path ending in
        ``.json``); or project codes and MOUS uids, asked of the archive first.
    dest : Path or str
        Folder that receives the delivery tree ``<project>/science_goal.*/group.*/member.*``.
    what : str, optional
        Comma-separated kinds: products, auxiliary, raw, readme, external (default: the
        ``download`` command's, ``transfer.plan.DEFAULT_WHAT``).
    archive : str, optional
        A mirror (eso, nrao, naoj) or URL; the files of a view move to it when given.
    user : str, optional
        ALMA account for proprietary data; its password comes from ``ALMA_PASSWORD``, the keyring or
        a prompt.
    parallel : int
        Connections per archive host (1-32).
    split : int
        Byte ranges fetched at once per large file (1-32).
    untar, keep_tars : bool
        Unpack each verified tarball; keep the tarball after unpacking.
    progress : bool
        tqdm bars on stderr (when it is a terminal).

    Returns
    -------
    TransferResult
        One ``FileResult`` per file (status fetched, already or failed), bytes and seconds;
        ``.ok`` is False when any file failed (what was fetched is kept: call again to resume).

    Raises
    ------
    almadeliver.errors.UsageError
        An unknown kind in ``what``, or a plan file that is not a project view.
    almadeliver.errors.AuthError
        The archive refused the password.
    almadeliver.errors.DiskSpaceError
        ``dest`` has not the room for the files and their unpacked trees.
    almadeliver.errors.NotFoundError, almadeliver.errors.ArchiveError
        From the query, when ids are given.

    Examples
    --------
    >>> result = download(query("2017.1.00123.S"), "data", what="products")   # doctest: +SKIP
    >>> result.ok, result.fetched_bytes                                        # doctest: +SKIP
    """
    from .archive.model import ProjectView
    from .archive.tap import Selection
    from .errors import UsageError
    from .transfer.download import TransferConfig, download as transfer
    from .transfer.plan import DEFAULT_WHAT
    from .workflow import FetchOptions, open_archive, plan_fetch

    options = FetchOptions(archive=archive, what=what or DEFAULT_WHAT, parallel=parallel, split=split,
                           credentials=_credentials(user))
    targets: Any = plan_or_ids
    if isinstance(targets, (str, Path)) and str(targets).endswith(".json"):
        try:
            targets = ProjectView.from_json(Path(targets).read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{plan_or_ids} is not a project view ({exc})",
                             "write one with `almadeliver query ... --format json` or ProjectView.to_json()") from None
    elif isinstance(targets, str):
        targets = Selection.from_ids([targets])
    elif not isinstance(targets, ProjectView):
        targets = Selection.from_ids([str(t) for t in targets])
    options.kinds                                    # an unknown kind is said before the archive is asked
    client = open_archive(options)
    plan = plan_fetch(targets, client, options)
    config = TransferConfig(parallel=parallel, split=split, untar=untar, keep_tars=keep_tars, progress=progress)
    return transfer(plan, Path(dest), config, client.session)


def _credentials(user: str | None):
    from .transfer.auth import get_credentials

    return get_credentials(user) if user else None


def validate(path: str | Path) -> "Report":
    """Check a delivery tree and say exactly what is wrong.

    Parameters
    ----------
    path : Path or str
        A project folder, a member folder (``member.uid___...``) or a staff reduction area.

    Returns
    -------
    Report
        The findings (``.of(Severity.ERROR)``, ...), the flavour and details; ``.ok(strict=False)``
        is True when no finding is an error (with ``strict``, no warning either).

    Raises
    ------
    almadeliver.errors.TreeError
        ``path`` is not a folder.

    Examples
    --------
    >>> report = validate("data/2017.1.00123.S")            # doctest: +SKIP
    >>> [f.message for f in report.of(report.findings[0].severity)]   # doctest: +SKIP
    """
    from .delivery.validate import validate as check

    return check(Path(path))


def restore(member: str | Path, *, spacesaving: int | None = None, dosplit: bool = False,
            engine: str = "auto", casa: str | Path | None = None, casa_version_mismatch: str = "refuse",
            resume: bool = False, dry_run: bool = False,
            on_progress: "Callable[[Progress], None] | None" = None) -> "RestoreResult | RestorePlan":
    """Restore the calibrated measurement sets of a delivery with its own scriptForPI.py.

    Parameters
    ----------
    member : Path or str
        The member folder (``member.uid___...``) holding ``script/`` and ``raw/`` (the ASDMs).
    spacesaving : int, optional
        scriptForPI's SPACESAVING: 0 keeps everything, 1 drops ``*.ms.split``, 2 also ``*.ms``,
        3 also ``*.ms.split.cal`` when ``calibrated.ms`` exists, -1 skips the disk check. None: the
        lowest level whose disk need (MB, scriptForPI's estimate) fits the free space.
    dosplit : bool
        Pipeline data: also split the science spws into ``<EB>.ms.split.cal`` (DOSPLIT).
    engine : {'auto', 'native', 'casa'}
        native: the hifa_restoredata steps in modular CASA; casa: run scriptForPI; auto: native for
        pipeline deliveries when no monolithic CASA with the pipeline is found, else casa.
    casa : Path or str, optional
        An external monolithic CASA (folder or ``bin/casa``); default ``$ALMADELIVER_CASA``, else
        ``casa`` on PATH, else the installed modular CASA.
    casa_version_mismatch : {'refuse', 'allow'}
        When the calibration scripts' exact-version gate asks for another CASA than the one that
        would run: refuse, or run them anyway (recorded in the result).
    resume : bool
        Keep the EBs an earlier run finished in ``calibrated/``.
    dry_run : bool
        Check everything (version gates, disk need) and return the plan; run nothing.
    on_progress : callable, optional
        Receives a ``Progress`` (phase, EB, scriptForPI step and title) as each step starts.

    Returns
    -------
    RestoreResult or RestorePlan
        The measurement sets made, SPACESAVING used, seconds, peak and final disk use of
        ``calibrated/`` (bytes) and the logs; with ``dry_run``, the checked ``RestorePlan``.

    Raises
    ------
    almadeliver.errors.UsageError
        An unknown engine or mismatch choice, or a folder that is not one member folder.
    almadeliver.errors.CasaVersionMismatchError
        The scripts' version gate refuses the CASA that would run.
    almadeliver.errors.DiskSpaceError
        No SPACESAVING level fits the free space (or the one asked does not).
    almadeliver.errors.CasaError
        CASA failed (the message names the step and the CASA log).

    Examples
    --------
    >>> r = restore("data/2017.1.00123.S/science_goal.uid___A001_X1_X2/group.uid___A001_X1_X3/"
    ...             "member.uid___A001_X1_X4", spacesaving=1)      # doctest: +SKIP
    >>> r.measurement_sets                                         # doctest: +SKIP
    """
    from .casa.restore import restore as run_restore
    from .workflow import RestoreOptions, plan_member_restore

    options = RestoreOptions(spacesaving=spacesaving, dosplit=dosplit, casa=None if casa is None else str(casa),
                             engine=engine, casa_version_mismatch=casa_version_mismatch, resume=resume)
    plan = plan_member_restore(Path(member), options)
    if plan.already_calibrated:      # Cycle 0: the delivery holds the calibrated MSs; nothing to run
        return plan
    plan.check()
    if dry_run:
        return plan
    return run_restore(plan, on_progress=on_progress)


def image(member: str | Path, *, out: str | Path | None = None, workers: int | None = None,
          source: str = "auto", dry_run: bool = False,
          on_done: Callable[[str, str | None], None] | None = None, **overrides: Any) -> "ImagingResult | ImagingPlan":
    """Remake the images of a restored delivery, with the changes asked for, beside the delivered ones.

    Parameters
    ----------
    member : Path or str
        The ``member.uid___...`` folder of a restored delivery (``calibrated/`` holds its MSs).
    out : Path or str, optional
        A new folder for the images (default ``MEMBER/reimage``); ``product/`` is never written.
    workers : int, optional
        Images made at once (default: number of CPUs).
    source : {'auto', 'pipeline', 'script'}
        Where the delivered imaging is read: ``casa_commands.log`` or ``scriptForImaging.py``.
    dry_run : bool
        Return the plan (the tclean calls that would run); run nothing.
    on_done : callable, optional
        Called with (image name, error or None) as each image ends.
    **overrides
        The fields of ``almadeliver.casa.imaging.Overrides``: ``robust`` (Briggs), ``uvtaper``
        (``'0.5arcsec'``), ``niter``, ``threshold`` (``'0.1mJy'``), ``nbin``, ``width`` (channels or
        ``'1.2MHz'``), ``spw``, ``field``, ``specmode``, ``cell`` (``'0.2arcsec'``), ``imsize``
        (pixels), ``contsub``, ``cont``, ``moments``. Quantities are given as text with units.

    Returns
    -------
    ImagingResult or ImagingPlan
        The images made and their comparison with the delivered ones (beam, rms and peak in Jy/beam);
        with ``dry_run`` the ``ImagingPlan``.

    Raises
    ------
    almadeliver.errors.UsageError
        An unknown override, or one that does not fit the delivery (an spw or field it does not image).
    almadeliver.errors.TreeError
        The member is not restored (no calibrated MS) or its imaging record is unreadable.
    almadeliver.errors.CasaError
        tclean failed (the message names the image and the CASA log).

    Examples
    --------
    >>> plan = image(member, robust=2.0, dry_run=True)     # doctest: +SKIP
    >>> [job.tclean["robust"] for job in plan.jobs]         # doctest: +SKIP
    """
    from .casa import imaging
    from .errors import UsageError
    from .workflow import ImageOptions, plan_member_images

    try:
        options = ImageOptions(imaging.Overrides(**{k: _text(v, _OVERRIDE_UNITS.get(k, "")) if hasattr(v, "to_value")
                                                    else v for k, v in overrides.items()}), source)
    except TypeError as exc:
        raise UsageError(f"image(): {exc}", "give the fields of almadeliver.casa.imaging.Overrides") from None
    plan = plan_member_images(Path(member), options)
    if dry_run:
        return plan
    return imaging.run(plan, out=None if out is None else Path(out), workers=workers, on_done=on_done)


#: the units a Quantity override is written in (the tclean text the delivered scripts use)
_OVERRIDE_UNITS = {"uvtaper": "arcsec", "cell": "arcsec", "threshold": "mJy", "width": "MHz"}


def package(area: str | Path, project: str, sg: str, group: str, out: str | Path = ".", *,
            max_size: int | str = "10GB", raw: str | Path | None = None,
            script_for_pi: str | Path | None = None) -> "PackageResult":
    """Check a staff reduction area and, when every checklist item passes, write its delivery files.

    Parameters
    ----------
    area : Path or str
        The reduction area (``almadeliver prepare``): Calibration_X*, Combination/, Imaging/.
    project : str
        Project code, e.g. ``2013.1.00308.S``.
    sg, group : str
        The science goal OUS and group OUS uids (either form).
    out : Path or str
        Folder for the tarballs, README and manifest.
    max_size : int or str
        Largest product tarball: bytes, or text with decimal units (``'10GB'``, ``'500MB'``).
    raw : Path or str, optional
        Folder holding the raw ASDMs (default: those the area links).
    script_for_pi : Path or str, optional
        The scriptForPI.py to ship (default: the area's).

    Returns
    -------
    PackageResult
        The tarballs written (name, bytes, md5) and the manifest.

    Raises
    ------
    almadeliver.errors.IdentifierError
        A code or uid that is not one.
    almadeliver.errors.PackagingError
        An item of the staff checklist failed (the message lists them).
    almadeliver.errors.DiskSpaceError
        ``out`` has not the room for the tarballs.

    Examples
    --------
    >>> package("area", "2013.1.00308.S", "uid://A001/X13e/X1fc", "uid://A001/X13e/X1fd",
    ...         "deliver")                                      # doctest: +SKIP
    """
    from .packaging.package import package_mous, parse_size

    size = max_size if isinstance(max_size, int) else parse_size(max_size)
    return package_mous(Path(area), project, sg, group, Path(out), size, None if raw is None else Path(raw),
                        None if script_for_pi is None else Path(script_for_pi))


def run(mous: Sequence[tuple[str, str]], dest: str | Path, *, steps: Sequence[str] | str | None = None,
        cluster: str = "local", workers: int = 2, archive: str | None = None, what: str | None = None,
        restore_options: dict[str, Any] | None = None, image_options: dict[str, Any] | None = None,
        on_outcome: "Callable[[StepOutcome], None] | None" = None) -> "RunResult":
    """Run download, validate, restore and image for many MOUS on local workers or a batch cluster.

    Parameters
    ----------
    mous : list of (str, str)
        (project code, MOUS uid) pairs.
    dest : Path or str
        Root of the delivery trees and of the run journal (steps journalled as done are skipped).
    steps : str or list of str, optional
        Steps in ``almadeliver.scale.run.STEPS`` (comma-separated text or a list); default all.
    cluster : str
        local, slurm, pbs, htcondor or ``tcp://HOST:8786``.
    workers : int
        Worker processes (local) or batch jobs.
    archive : str, optional
        A mirror (eso, nrao, naoj) or URL.
    what : str, optional
        Kinds to fetch (default ``workflow.RUN_WHAT``: what restoring and imaging need).
    restore_options : dict, optional
        Keyword arguments of ``workflow.RestoreOptions`` (spacesaving, engine, ...).
    image_options : dict, optional
        Overrides of the imaging (``casa.imaging.Overrides`` fields).
    on_outcome : callable, optional
        Receives each ``StepOutcome`` as it ends.

    Returns
    -------
    RunResult
        One outcome per MOUS and step; ``.failed`` lists those that did not succeed.

    Raises
    ------
    almadeliver.errors.UsageError
        An unknown step or cluster, or dask missing for a cluster.

    Examples
    --------
    >>> result = run([("2017.1.00123.S", "uid://A001/X1/X4")], "data",
    ...              steps="download,validate")                  # doctest: +SKIP
    """
    from .casa import imaging
    from .scale.run import STEPS, RunConfig, run as run_steps
    from .workflow import RUN_WHAT, FetchOptions, ImageOptions, RestoreOptions

    chosen = tuple(steps.split(",")) if isinstance(steps, str) else tuple(steps or STEPS)
    mismatch = (restore_options or {}).get("casa_version_mismatch", "refuse")
    config = RunConfig(dest=Path(dest), steps=chosen, cluster=cluster, workers=workers, archive=archive,
                       casa_version_mismatch=mismatch,
                       fetch=FetchOptions(what=what or RUN_WHAT), restore=RestoreOptions(**(restore_options or {})),
                       image=ImageOptions(imaging.Overrides(**(image_options or {}))))
    return run_steps(config, list(mous), on_outcome=on_outcome)
