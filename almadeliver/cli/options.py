"""Options shared by several commands (one definition each).

``almadeliver run`` takes the options of ``download``, ``restore`` and ``image`` from here, so a
command and ``run`` cannot drift apart.
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Callable, Optional

import typer

from ..casa import imaging
from ..casa.restore import ENGINES, MISMATCH_CHOICES
from ..transfer.auth import get_credentials
from ..transfer.plan import WHAT
from ..workflow import ImageOptions

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
SOURCE_OPTION = (str, typer.Option(
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
