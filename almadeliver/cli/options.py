"""Options shared by several commands (one definition each).

``almadeliver run`` takes the options of ``download``, ``restore`` and ``image`` from here, so a
command and ``run`` cannot drift apart.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Callable, List, Literal, Optional

import typer

from ..casa import imaging
from ..casa.restore import ENGINES, MISMATCH_CHOICES
from ..errors import UsageError
from ..casa.selfcal import DEFAULT_ROUNDS
from ..transfer.auth import get_credentials
from ..transfer.plan import WHAT
from ..transfer.select import CUTOUT_DEFAULT_FILES, Cutout, make_cutout, target_centre
from ..workflow import ImageOptions

#: Choices as types: typer shows them in --help (``<auto|native|casa>``) and refuses any other word.
Engine = Literal[ENGINES]
CasaVersionMismatch = Literal[MISMATCH_CHOICES]
ImageSource = Literal["auto", "pipeline", "script"]

CasaOption = typer.Option(
    None, "--casa", envvar="ALMADELIVER_CASA", help="An external monolithic CASA (folder or bin/casa)."
)
UserOption = typer.Option(None, "--user", help="ALMA account for proprietary data (password asked, or keyring, "
                                               "or ALMA_PASSWORD).")
SpacesavingOption = typer.Option(
    None, "--spacesaving", help="scriptForPI's SPACESAVING: 0 keeps everything, 1 drops *.ms.split, 2 also "
    "*.ms, 3 also *.ms.split.cal when calibrated.ms exists, -1 skips the disk check. Default: the lowest "
    "level that fits.")
DosplitOption = typer.Option(False, "--dosplit", help="Pipeline data: also split the science spws into "
                             "<EB>.ms.split.cal (scriptForPI's DOSPLIT).")
EngineOption = typer.Option(
    "auto", "--engine", help=f"{' | '.join(ENGINES)}. native: restore a pipeline delivery with modular CASA "
    "(the hifa_restoredata steps); casa: run scriptForPI; auto: native for pipeline deliveries when no "
    "monolithic CASA with the pipeline is found, else casa.")
CasaVersionMismatchOption = typer.Option(
    "refuse", "--casa-version-mismatch", help=f"{' | '.join(MISMATCH_CHOICES)}: when the calibration scripts' "
    "exact-version gate asks for another CASA than the one that would run, refuse (default) or run them in "
    "the installed modular CASA anyway (recorded in the restore report and log).")

SelfcalRoundsOption = typer.Option(
    DEFAULT_ROUNDS, "--selfcal-rounds", help="MODE:SOLINT per self-calibration round (MODE p or ap); a round is "
    "kept only if the dynamic range rises and the rms does not.")
SelfcalCubesOption = typer.Option(
    True, "--selfcal-cubes/--no-selfcal-cubes", help="After self-calibrating the continuum, remake the delivered "
    "cubes with the solutions (default), or not.")
SkipLackingOption = typer.Option(
    False, "--skip-lacking", help="Recalibration: skip the steps that need what modular CASA lacks (analysisUtils, "
    "wvrgcal), instead of refusing; they are listed.")


def what_option(default: str) -> typer.models.OptionInfo:
    """``--what`` with its default (``download`` and ``run`` fetch different kinds by default)."""
    return typer.Option(default, "--what", help=f"Comma-separated kinds: {','.join(WHAT)} (external: ARI-L and "
                        "other external products).")


def credentials_of(user: str | None):
    """The credentials of ``--user`` (password from ALMA_PASSWORD, the keyring or a prompt), or None."""
    return get_credentials(user) if user else None


# --image overrides: (annotation, option) per field of imaging.Overrides; `image` and `run` take them all
IMAGE_OVERRIDES: dict[str, tuple[object, typer.models.OptionInfo]] = {
    "robust": (Optional[float], typer.Option(
        None, "--robust", help="Briggs robust (larger: larger beam, lower noise).")),
    "uvtaper": (Optional[str], typer.Option(None, "--uvtaper", help="Outer uv taper, e.g. 0.5arcsec.")),
    "niter": (Optional[int], typer.Option(None, "--niter", help="Maximum clean iterations.")),
    "threshold": (Optional[str], typer.Option(None, "--threshold", help="Clean threshold, e.g. 0.1mJy.")),
    "nbin": (Optional[str], typer.Option(None, "--nbin", help="Average K channels of each cube (K), or per spw "
                                         "as the pipeline's nbins ('17:8,23:2').")),
    "width": (Optional[str], typer.Option(None, "--width", help="Cube channel width: channels, e.g. 1.2MHz or "
                                          "0.5km/s; per spw as --nbin ('17:2MHz,23:1km/s').")),
    "start": (Optional[str], typer.Option(None, "--start", help="Cube's first channel: a channel, e.g. 230.1GHz "
                                          "or -50km/s; per spw ('17:230.1GHz').")),
    "nchan": (Optional[str], typer.Option(None, "--nchan", help="Cube's channel count; per spw ('17:100,23:50').")),
    "restfreq": (Optional[str], typer.Option(None, "--restfreq", help="Cube's rest frequency (velocities are "
                                             "radio velocities towards it), e.g. 230.538GHz; per spw.")),
    "spectral_range": (Optional[str], typer.Option(None, "--range", help="Cube range LO~HI, e.g. -50~50km/s or "
                                                   "230.1~230.3GHz: start and nchan in the cube's width (same "
                                                   "kind of unit); per spw ('23:-50~50km/s').")),
    "spw": (Optional[str], typer.Option(
        None, "--spw", help="Only these spws (ids as in the product names, comma list).")),
    "field": (Optional[str], typer.Option(None, "--field", help="Only these fields (names, comma list).")),
    "specmode": (Optional[str], typer.Option(None, "--specmode", help="Only cube, mfs or cont images.")),
    "cell": (Optional[str], typer.Option(None, "--cell", help="Pixel size, e.g. 0.2arcsec.")),
    "imsize": (Optional[int], typer.Option(None, "--imsize", help="Image size in pixels (square).")),
    "contsub": (bool, typer.Option(
        False, "--contsub", help="Subtract the continuum before cubes: fitted on cont.dat's ranges, --line-free, "
        "or (manual deliveries) the line-free channels found in the delivered cube.")),
    "line_free": (Optional[str], typer.Option(
        None, "--line-free", help="Line-free ranges for --contsub and --moments, per spw as --nbin "
        "('0:230.0~230.1GHz;230.3~230.4GHz', LSRK): instead of cont.dat or the channel finder.")),
    "cont": (Optional[str], typer.Option(None, "--cont", help="'all': continuum images from every unflagged "
                                         "channel (cont.dat's ranges ignored, as with cont.dat moved aside).")),
    "moments": (Optional[str], typer.Option(None, "--moments", help="Moment maps of each cube (immoments), "
                                            "e.g. 0,1,8: FITS and PNG beside the cubes (line channels outside "
                                            "cont.dat's ranges, --line-free or the found line-free channels).")),
}
SOURCE_OPTION = (ImageSource, typer.Option(
    "auto", "--from", help="auto, pipeline (casa_commands.log) or script (scriptForImaging.py)."))


def with_image_options(command: Callable) -> Callable:
    """Give a command the image overrides and ``--from``; it receives them as one ``image: ImageOptions``.

    The options are added to the command's signature (where typer reads them), after its own.
    """
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command)         # the command's own annotations, resolved in its module
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in signature.parameters.values() if p.name != "image"]
    added = {**IMAGE_OVERRIDES, "source": SOURCE_OPTION}
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, (annotation, option) in added.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        overrides = imaging.Overrides(**{name: kwargs.pop(name) for name in IMAGE_OVERRIDES})
        image = ImageOptions(overrides, kwargs.pop("source"))
        return command(**kwargs, image=image)

    del wrapper.__wrapped__          # typer reads __signature__, not the wrapped command's
    wrapper.__signature__ = signature.replace(parameters=own + extra)
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{n: a for n, (a, _o) in added.items()}}
    return wrapper


# --files and --cutout: `download` and `run` take them all (`query` has its own --ra/--dec/--target/...)
SELECTION_OPTIONS: dict[str, tuple[object, typer.models.OptionInfo]] = {
    "files": (Optional[List[str]], typer.Option(
        None, "--files", metavar="PATTERN", help="Only the files inside the tarballs whose name matches (shell "
        "pattern, e.g. '*.pbcor.fits', '*.cont.dat'; repeatable), each put where untarring would put it.")),
    "cutout": (bool, typer.Option(
        False, "--cutout", help="SODA cutouts of the FITS products (those of --files, default "
        f"{' '.join(CUTOUT_DEFAULT_FILES)}) instead of the products: <name>.cutout.fits beside them.")),
    "ra": (Optional[str], typer.Option(None, "--ra", help="Cutout centre RA: degrees or 05h35m17s / 05:35:17.")),
    "dec": (Optional[str], typer.Option(None, "--dec", help="Cutout centre Dec: degrees or -05d23m28s.")),
    "radius": (Optional[str], typer.Option(None, "--radius", help="Cutout radius: degrees or with units (15arcsec).")),
    "target": (Optional[str], typer.Option(None, "--target", help="Cutout centre: this target's position in "
                                           "ObsCore (else a name resolver's).")),
    "freq": (Optional[str], typer.Option(None, "--freq", help="Cutout band: sky frequencies lo..hi (230.1..230.6GHz).")),
    "line": (Optional[str], typer.Option(None, "--line", help="Cutout band around a line: CO(2-1) or 230.538GHz.")),
    "z": (Optional[float], typer.Option(None, "--z", help="Redshift of --line (observed = rest / (1 + z)).")),
    "line_width": (Optional[float], typer.Option(None, "--line-width", help="Full width of the band around --line, km/s.")),
}


@dataclass(frozen=True)
class SelectionWords:
    """The ``--files``/``--cutout`` options as given (the cutout's target is resolved later, with a client)."""

    files: tuple[str, ...] = ()
    cutout: bool = False
    ra: str | None = None
    dec: str | None = None
    radius: str | None = None
    target: str | None = None
    freq: str | None = None
    line: str | None = None
    z: float | None = None
    line_width: float | None = None

    def check(self) -> None:
        """Refuse cutout words without --cutout (exit 2), before any password is asked."""
        words = [self.ra, self.dec, self.radius, self.target, self.freq, self.line, self.z, self.line_width]
        if not self.cutout and any(w is not None for w in words):
            raise UsageError("--ra/--dec/--radius/--target/--freq/--line/--z/--line-width describe a cutout",
                             "add --cutout (or leave them out)")
        if self.cutout and self.target is None:
            make_cutout(self.ra, self.dec, self.radius, None, self.freq, self.line, self.z, self.line_width)

    def cutout_of(self, client=None, projects: list[str] | None = None) -> Cutout | None:
        """The Cutout asked (None without --cutout); ``--target`` is looked up with ``client``."""
        if not self.cutout:
            return None
        centre = target_centre(client, self.target, projects or []) if self.target else None
        return make_cutout(self.ra, self.dec, self.radius, centre, self.freq, self.line, self.z, self.line_width)


def with_selection_options(command: Callable) -> Callable:
    """Give a command ``--files``, ``--cutout`` and the cutout's options, received as ``selection: SelectionWords``."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in signature.parameters.values() if p.name != "selection"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, (annotation, option) in SELECTION_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        words = {name: kwargs.pop(name) for name in SELECTION_OPTIONS}
        words["files"] = tuple(words["files"] or ())
        selection = SelectionWords(**words)
        selection.check()
        return command(**kwargs, selection=selection)

    del wrapper.__wrapped__
    wrapper.__signature__ = signature.replace(parameters=own + extra)
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own},
                               **{n: a for n, (a, _o) in SELECTION_OPTIONS.items()}}
    return wrapper
