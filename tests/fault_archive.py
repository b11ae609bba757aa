"""A small archive for fault tests and the fault soak (benchmarks/bench_faults.py), and how to judge a run.

One public project laid out as `simulate` writes it (catalogue.json + files/): a products tarball in
two parts, an auxiliary tarball, a raw ASDM tarball (random bytes, so nothing compresses or lines up
by chance) and the README. A run is judged against a plain ``tar xf`` of the same tarballs: every
file it leaves in the tree must be byte-identical to the reference, every file the faults allow must
be there, and every file must cost a bounded number of bytes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from almadeliver.archive.model import ArchiveFile, Mous, Project, ProjectView
from almadeliver.ids import DeliveryFileName, TarballKind, Uid, auxiliary_name, products_name, raw_name, readme_name
from almadeliver.packaging.tarballs import write_tar
from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.sim.archive import Faults, LocalArchive
from almadeliver.transfer.download import TransferConfig, TransferResult, download
from almadeliver.transfer.plan import DownloadPlan, make_plan, parse_what

PROJECT = "2017.1.01185.S"
SG, GOUS, MOUS = Uid.parse("uid://A001/X12a3/Xe7"), Uid.parse("uid://A001/X12a3/Xe8"), Uid.parse("uid://A001/X12a3/Xe9")
EB = Uid.parse("uid://A002/Xd28a9e/X71b8")
MEMBER = f"{PROJECT}/science_goal.{SG.disk}/group.{GOUS.disk}/member.{MOUS.disk}"
KiB, MiB = 1 << 10, 1 << 20

# what the tarballs hold: member path -> bytes of random data
CONTENT = {
    products_name(PROJECT, MOUS, 1, 2): {f"{MEMBER}/product/W51.spw25.cube.I.pbcor.fits": 560 * KiB,
                                         f"{MEMBER}/script/{MOUS.disk}.scriptForPI.py": 3 * KiB},
    products_name(PROJECT, MOUS, 2, 2): {f"{MEMBER}/product/W51.spw27.cube.I.pbcor.fits": 200 * KiB},
    auxiliary_name(PROJECT, MOUS): {f"{MEMBER}/calibration/{MOUS.disk}.cont.dat": 20 * KiB},
    raw_name(PROJECT, EB): {f"{MEMBER}/raw/{EB.disk}.asdm.sdm/ASDM.xml": 1 * KiB},
}

# the fault kinds of the local archive (serve's flags), one at a time
SINGLE = {
    "drop 1 kB": {"drop_after": 1000},
    "drop 64 kB": {"drop_after": 64 * KiB},
    "drop 1.1 MB": {"drop_after": 1_100_000},
    "drop 10 MB": {"drop_after": 10_000_000},
    "ignore-range": {"ignore_range": True},
    "html-instead": {"html_instead": True},
    "503 burst": {"fail_503": 4},
    "latency 20 ms": {"latency": 0.02},
    "throttle 4 MB/s": {"throttle": 4e6},
    "slow first byte": {"slow_first_byte": 0.2},
}
# pairs: every drop size with ignore-range (the combination that cannot finish), and the others
PAIRS = {
    "ignore-range + drop 1 kB": {"ignore_range": True, "drop_after": 1000},
    "ignore-range + drop 64 kB": {"ignore_range": True, "drop_after": 64 * KiB},
    "ignore-range + drop 1.1 MB": {"ignore_range": True, "drop_after": 1_100_000},
    "ignore-range + 503 burst": {"ignore_range": True, "fail_503": 3},
    "drop 64 kB + 503 burst": {"drop_after": 64 * KiB, "fail_503": 3},
    "drop 1 kB + throttle 4 MB/s": {"drop_after": 1000, "throttle": 4e6},
    "drop 64 kB + latency 20 ms": {"drop_after": 64 * KiB, "latency": 0.02},
    "html-instead + 503 burst": {"html_instead": True, "fail_503": 3},
    "html-instead + drop 1 kB": {"html_instead": True, "drop_after": 1000},
    "latency 20 ms + throttle 4 MB/s": {"latency": 0.02, "throttle": 4e6},
    "ignore-range + slow first byte": {"ignore_range": True, "slow_first_byte": 0.2},
}
FAST = dict(progress=False, backoff=0.02, backoff_max=0.1)


def build(root: Path, seed: int = 15) -> Path:
    """Write the project under ``root`` (and the README); returns ``root``."""
    import random
    rng = random.Random(seed)
    files = root / PROJECT / FILES_DIR
    files.mkdir(parents=True)
    staging = root / "staging"
    listed = []
    for name, members in CONTENT.items():
        entries = []
        for arc, size in members.items():
            src = staging / name / arc
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(rng.randbytes(size))
            entries.append((arc, src))
        write_tar(files / name, entries)
        kind = DeliveryFileName.parse(name).kind
        semantics = {TarballKind.PRODUCTS: "#this", TarballKind.AUXILIARY: "#auxiliary"}.get(kind, "#progenitor")
        listed.append(CatalogueFile(name, semantics, "application/x-tar", (files / name).stat().st_size, [MOUS.archive]))
    readme = readme_name(MOUS)
    (files / readme).write_text("ALMA project 2017.1.01185.S\nCASA version used for reduction: 6.5.4\n" * 40)
    listed.append(CatalogueFile(readme, "#documentation", "text/plain", (files / readme).stat().st_size, [MOUS.archive]))
    Catalogue(PROJECT, False, [], listed).save(root / PROJECT)
    shutil.rmtree(staging)
    return root


def reference(root: Path, out: Path) -> dict[str, str]:
    """A plain ``tar xf`` of every tarball (and the README copied): the tree a run must match."""
    out.mkdir(parents=True, exist_ok=True)
    for f in Catalogue.load(root / PROJECT).files:
        src = root / PROJECT / FILES_DIR / f.name
        if f.name.endswith(".tar"):
            subprocess.run(["tar", "xf", str(src), "-C", str(out)], check=True)
        else:
            shutil.copyfile(src, out / f.name)
    return tree(out)


def tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file under ``path`` (almadeliver's own folder left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != ".almadeliver"]
        for name in filenames:
            p = Path(dirpath) / name
            found[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def view(archive: LocalArchive) -> ProjectView:
    """The project view the query stage would hand over for the served catalogue."""
    cat = Catalogue.load(archive.root / PROJECT)
    files = [ArchiveFile(f.name, f"{archive.url}/dataPortal/{f.name}", f.size, DeliveryFileName.parse(f.name).kind,
                         MOUS.archive) for f in cat.files]
    m = Mous(MOUS.archive, GOUS.archive, SG.archive, "12m", True, [EB.archive], ["W51"], ["3"], 4, files)
    return ProjectView(archive.url, [Project(PROJECT, "W51", "PI", 5, "Public", "2019-01-01", ["3"], ["W51"], [m])], 4, 0)


def plan(archive: LocalArchive) -> DownloadPlan:
    return make_plan(view(archive), parse_what("products,auxiliary,raw,readme"))


def feasible(size: int, faults: dict) -> bool:
    """Whether a file of ``size`` bytes can arrive at all under ``faults``."""
    if faults.get("html_instead"):
        return False
    drop = faults.get("drop_after")
    return not (faults.get("ignore_range") and drop is not None and drop < size)


@dataclass
class Case:
    """One download run under one set of faults, judged."""

    name: str
    faults: dict
    result: TransferResult
    identical: list[str] = field(default_factory=list)   # files (plan names) that arrived byte-identical
    refused: list[str] = field(default_factory=list)     # files that failed with a one-line error
    problems: list[str] = field(default_factory=list)    # anything that breaks the contract
    bytes_sent: int = 0
    bytes_delivered: int = 0
    refused_sent: int = 0          # bytes the archive sent for the refused files
    refused_size: int = 0          # their sizes


BUDGET = TransferConfig().budget


def run_case(archive: LocalArchive, name: str, faults: dict, dest: Path, ref: dict[str, str],
             config: TransferConfig | None = None) -> Case:
    """Download the whole project under ``faults`` into ``dest`` and judge the run."""
    archive.faults = Faults(**faults)
    archive.stats.reset()
    p = plan(archive)
    config = config or TransferConfig(**FAST)
    result = download(p, dest, config)
    archive.faults = Faults()
    case = Case(name, faults, result)
    got = tree(dest)
    for rel, digest in got.items():
        if rel.endswith(".part"):
            continue
        if ref.get(rel) != digest and not rel.endswith(".tar"):
            case.problems.append(f"{rel} differs from tar xf")
    members = {n: [arc for arc in CONTENT.get(n, {n: 0})] for n in (f.name for f in p.files)}
    for f, r in zip(p.files, result.files):
        sent = archive.stats[f.name].bytes_sent
        case.bytes_sent += sent
        limit = (BUDGET + 1) * f.size + config.budget_slack     # the budget, plus at most one answer past it
        if sent > limit:
            case.problems.append(f"{f.name}: {sent} bytes sent for {f.size} (limit {limit})")
        if r.status == "failed":
            text = str(r.error)
            if "\n" in text or not text:
                case.problems.append(f"{f.name}: error is not one line: {text!r}")
            case.refused.append(f.name)
            case.refused_sent += sent
            case.refused_size += f.size
            part = dest / (f.name + ".part")
            if r.fetched and not part.exists() and feasible(f.size, faults):
                case.problems.append(f"{f.name}: {r.fetched} bytes fetched but the .part is gone")
        else:
            wanted = members[f.name] if f.name.endswith(".tar") else [f.name]
            if all(got.get(arc) == ref[arc] for arc in wanted):
                case.identical.append(f.name)
                case.bytes_delivered += f.size
            else:
                case.problems.append(f"{f.name}: reported {r.status} but its files are not all identical")
        if feasible(f.size, faults) and r.status == "failed":
            case.problems.append(f"{f.name}: could arrive under these faults but failed: {r.error}")
        if not feasible(f.size, faults) and r.status != "failed":
            case.problems.append(f"{f.name}: cannot arrive under these faults but was reported {r.status}")
    return case
