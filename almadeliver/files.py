"""Writing files so that a crash (or a reader at the same moment) sees the old file or the new one, never half."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: Path, text: str, tmp: Path | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it (``os.replace``).

    Parameters
    ----------
    path : Path
        The file to write; its folder must exist.
    text : str
        The whole new content.
    tmp : Path, optional
        The temporary file (same folder as ``path``); default ``<name>.<pid>.<thread>.tmp``, so that
        processes and threads writing the same file at once never share one.

    Raises
    ------
    OSError
        The write or the rename failed (a full disk: ``errno.ENOSPC``); the temporary file is removed
        and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = tmp or path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
