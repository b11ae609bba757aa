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
        path = Path(folder) / CATALOGUE_NAME
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: Path) -> "Catalogue":
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
