"""Package a group's combination products (a GOUS area) as ``<project>_<GOUS>_<m>_of_<n>.tar``.

A group area is ``<GOUS uid___>/`` holding README and ``Imaging/`` (scriptForImaging.py, one clean
casa*.log, ``*.pbcor.fits`` with their ``*.flux.fits``). The tarballs unpack to
``<project>/science_goal.<SG>/group.<GOUS>/`` with README, script/, product/ and log/.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..delivery.staff import IMAGING_SCRIPT, casa_logs, check_group_area, load_area
from ..errors import PackagingError
from ..ids import ProjectCode, Uid
from .package import (PackageResult, _check_space, _images, _log_tgz, _out_folder, _tree_listing,
                      _write_products, compose_readme, require_checklist, write_manifest)
from .tarballs import tar_size


def package_group(area: Path, project: str, sg: str, out: Path, max_size: int,
                  members: list[str]) -> PackageResult:
    """Check a group area and write its m_of_n tarballs and manifest into ``out``.

    Parameters
    ----------
    members : list of str
        The member OUS uids of the group. Group deliveries only take place when a group has more
        than one member (ALMA QA2 Data Products, section 2): one member is refused.

    Raises
    ------
    PackagingError
        When the group has fewer than two members, or the group checklist fails.
    """
    code, sg_uid = ProjectCode.parse(project), Uid.parse(sg)
    member_uids = list(dict.fromkeys(Uid.parse(m) for m in members))
    staff = load_area(area)
    if len(member_uids) < 2:
        raise PackagingError(
            f"group {staff.ous.archive} has {len(member_uids)} member"
            f"{'' if len(member_uids) == 1 else 's'} ({', '.join(m.archive for m in member_uids) or 'none given'}): "
            "group deliveries are made only for groups with more than one member",
            "package the member with 'almadeliver package', or name every member with --member")
    require_checklist(check_group_area(area))
    prefix = f"{code}/science_goal.{sg_uid.disk}/group.{staff.ous.disk}"
    out = _out_folder(out)
    staging = out / f".staging.{staff.ous.disk}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "log").mkdir(parents=True)
    try:
        entries = [(f"{prefix}/script/{IMAGING_SCRIPT}", staff.imaging / IMAGING_SCRIPT),
                   _log_tgz(staging / "log", "Imaging.log", casa_logs(staff.imaging), prefix)]
        entries += [(f"{prefix}/product/{p.name}", p) for p in _images(staff)]
        entries.append((f"{prefix}/README", staging / "README"))
        tree = _tree_listing([a for a, _ in entries], code.code)
        (staging / "README").write_text(compose_readme(staff.readme.read_text(errors="replace"), code, tree))
        _check_space(out, tar_size(entries))
        result = PackageResult(code.code, staff.ous.archive, out, [], out / f"{code}_{staff.ous.disk}.manifest.json")
        _write_products(result, out, code, staff.ous, entries, max_size)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(result)
    return result
