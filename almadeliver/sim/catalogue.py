"""What a simulated project publishes: its ObsCore rows and its DataLink entries.

``almadeliver simulate`` writes, per project::

    DIR/<project>/catalogue.json     this Catalogue
    DIR/<project>/files/<name>       every file the archive serves (tarballs, README.txt)

and ``almadeliver serve DIR`` serves every project folder found under DIR.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError

CATALOGUE_NAME = "catalogue.json"
FILES_DIR = "files"


@dataclass
class TarMember:
    """One file inside a tarball (a row of the nested DataLink answer)."""

    path: str            # path inside the tarball
    size: int
    content_type: str    # image/fits, text/plain, application/octet-stream, ...
    semantics: str = "#this"


@dataclass
class CatalogueFile:
    """One file the archive serves at /dataPortal/<name>, and the DataLink ids it is listed under."""

    name: str
    semantics: str        # #this | #auxiliary | #progenitor | #documentation
    content_type: str     # application/x-tar | text/plain
    size: int
    ids: list[str]        # the MOUS uids (uid://...) whose DataLink answer lists it
    description: str = ""
    members: list[TarMember] = field(default_factory=list)


@dataclass
class Catalogue:
    """A project as the archive publishes it."""

    project: str
    proprietary: bool
    obscore: list[dict]                 # one dict per ObsCore row, keys from archive.obscore
    files: list[CatalogueFile]

    def save(self, folder: Path) -> Path:
        """Write the catalogue as ``folder/catalogue.json``; returns its path."""
        path = Path(folder) / CATALOGUE_NAME
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: Path) -> "Catalogue":
        """Read ``folder/catalogue.json`` (written by ``save``)."""
        data = json.loads((Path(folder) / CATALOGUE_NAME).read_text())
        files = [CatalogueFile(**{**f, "members": [TarMember(**m) for m in f["members"]]}) for f in data["files"]]
        return cls(data["project"], data["proprietary"], data["obscore"], files)


def catalogue_from_manifests(project: str, obscore: list[dict], manifests: list[Path],
                             proprietary: bool = False) -> Catalogue:
    """The catalogue of packaged deliveries: their files and members from the ``package`` manifests
    (each listed under the manifest's OUS), beside the project's ObsCore rows (which describe the
    observations, so a re-packaged delivery keeps the rows the simulator wrote)."""
    files = []
    for path in manifests:
        manifest = json.loads(Path(path).read_text())
        if manifest["project"] != project:
            raise UsageError(f"{path} is a manifest of {manifest['project']}, not {project}",
                             "give the manifests of this project's packages")
        files += [CatalogueFile(f["name"], f["semantics"], f["content_type"], f["size"], [manifest["ous"]],
                                f["description"], [TarMember(**m) for m in f["members"]])
                  for f in manifest["files"]]
    return Catalogue(project, proprietary, obscore, files)


def find_projects(root: Path) -> list[Path]:
    """Every project folder (one holding a catalogue.json) at or below ``root``."""
    root = Path(root)
    if (root / CATALOGUE_NAME).is_file():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{CATALOGUE_NAME}"))


# -- ObsCore values written the way ALMA writes them ------------------------------------------------
def _jy(mjy: float) -> str:
    """A sensitivity as ALMA prints it: mJy/beam, or uJy/beam below 1 mJy."""
    return f"{mjy:.1f}mJy/beam" if mjy >= 1 else f"{mjy * 1e3:.1f}uJy/beam"


def frequency_support(spws: list[dict]) -> str:
    """ObsCore ``frequency_support`` of a MOUS: one segment per spw joined by `` U ``, e.g.
    ``[239.50..241.37GHz,976.56kHz,1.7mJy/beam@10km/s,111.7uJy/beam@native, XX YY]`` (the form
    recorded in ALminer issue #8 and astroquery's tests). Each spw dict: ``lo_ghz``, ``hi_ghz``,
    ``res_khz``, optional ``sens_10kms``/``sens_native`` (mJy/beam), ``pols`` (default 'XX YY'),
    ``frame`` (a reference-frame word after the polarizations; the recorded answers carry none,
    the parser reads one) and ``kind`` (line/cont, as the archive's web export adds)."""
    parts = []
    for s in spws:
        fields = [f"{s['lo_ghz']:.2f}..{s['hi_ghz']:.2f}GHz", f"{s['res_khz']:.2f}kHz"]
        if s.get("sens_10kms") is not None:
            fields.append(f"{_jy(s['sens_10kms'])}@10km/s")
        if s.get("sens_native") is not None:
            fields.append(f"{_jy(s['sens_native'])}@native")
        fields.append(" " + s.get("pols", "XX YY") + (f" {s['frame']}" if s.get("frame") else ""))
        if s.get("kind"):
            fields.append(s["kind"])
        parts.append("[" + ",".join(fields) + "]")
    return " U ".join(parts)


def circle_region(ra: float, dec: float, radius: float) -> str:
    """``Circle ICRS ra dec r`` (degrees; ALMA prints 6 decimals)."""
    return f"Circle ICRS {ra:.6f} {dec:.6f} {radius:.6f}"


def polygon_region(ra: float, dec: float, radius: float, corners: int = 8, frame: bool = True) -> str:
    """A mosaic outline around (ra, dec): ``Polygon ICRS ra1 dec1 ...`` (no frame inside a Union)."""
    import math

    pts = []
    for k in range(corners):
        a = 2 * math.pi * k / corners
        pts.append(f"{ra + radius * math.sin(a) / math.cos(math.radians(dec)):.6f} {dec + radius * math.cos(a):.6f}")
    return ("Polygon ICRS " if frame else "Polygon ") + " ".join(pts)


def union_region(parts: list[tuple[float, float, float]]) -> str:
    """Disjoint mosaics of one MOUS: ``Union ICRS ( Polygon ... Polygon ... )`` as in alma-shapes.xml."""
    return "Union ICRS ( " + " ".join(polygon_region(ra, dec, r, frame=False) for ra, dec, r in parts) + " )"
