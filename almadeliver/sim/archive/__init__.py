"""A local ALMA archive on 127.0.0.1: TAP, DataLink and dataPortal over simulated projects.

``LocalArchive(root)`` serves every project ``almadeliver simulate`` wrote under ``root``
(``<project>/catalogue.json`` + ``<project>/files/<name>``) the way the ALMA archive does
(ALMA-FACTS section 2), so that astroquery, pyvo and almadeliver itself run unmodified against it.
Faults (throttling, latency, dropped connections, ignored Range, HTML login pages, 503 bursts, a
slow first byte) are set per instance and may be changed between requests.

``content`` (what is served), ``tap``, ``datalink``, ``dataportal`` (the three services), ``http``
(dispatch and identity), ``faults`` (what goes wrong, what was counted), ``local`` (the server).
"""
from .faults import ArchiveStats, Faults, FileStats
from .local import LocalArchive
from .tap import TAP_TABLES

__all__ = ["ArchiveStats", "Faults", "FileStats", "LocalArchive", "TAP_TABLES"]
