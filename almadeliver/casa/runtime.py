"""The offline CASA runtime.

Modular CASA (casatools from PyPI) reads a site config on import and, by default, downloads
measures data. ``configure_offline`` writes our own site config (measures from the installed
casadata package, no auto-update, log file chosen per run); a CASA child (``run_in_casa``) gets
``CASASITECONFIG`` pointing at it unless the user set their own, and ``offline_environment`` does
the same for this process just before CASA is imported here. Importing almadeliver changes no
environment variable.

CASA work runs in a child Python (``run_in_casa``) whose working folder and log file are chosen by
the caller, so no stray ``casa-*.log`` lands in the user's current directory.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import CasaError, CasaNotFoundError
from ..files import write_atomic
from .warm import WarmUnavailable, forget, warm_casa

LOGFILE_ENV = "ALMADELIVER_CASA_LOGFILE"
CASA_ENV = "ALMADELIVER_CASA"


def home() -> Path:
    """The folder almadeliver owns for its own state (site config, caches).

    Returns
    -------
    Path
        The folder (``$ALMADELIVER_HOME``, else ``~/.almadeliver``).
    """
    if os.environ.get("ALMADELIVER_HOME"):
        return Path(os.environ["ALMADELIVER_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "almadeliver"


def casadata_path() -> Path | None:
    """The measures and data tree shipped by the casadata package (found without importing CASA).

    Returns
    -------
    Path | None
        The casadata data folder, or None when casadata is not installed.
    """
    spec = importlib.util.find_spec("casadata")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "__data__"


def _site_config_text(data: Path | None, cachedir: Path) -> str:
    return (
        "# Written by almadeliver: offline modular CASA (do not edit; rewritten when it changes)\n"
        "import os\n"
        f"measurespath = {str(data)!r}\n"
        f"datapath = [{str(data)!r}]\n"
        "measures_auto_update = False\n"
        "data_auto_update = False\n"
        "skipnetworkcheck = True\n"
        "nologger = True\n"
        "nogui = True\n"
        f"cachedir = {str(cachedir)!r}\n"
        f"logfile = os.environ.get({LOGFILE_ENV!r}) or os.path.join(cachedir, 'casa.log')\n"
    )


def configure_offline() -> Path:
    """Write almadeliver's offline site config (when it changed); returns its path.

    Nothing in the environment changes: ``casa_env`` (a CASA child) and ``offline_environment``
    (CASA in this process) point ``CASASITECONFIG`` at it when the user has not set their own.

    Returns
    -------
    Path
        The site config file.
    """
    folder = home() / "casa"
    path = folder / "casasiteconfig.py"
    text = _site_config_text(casadata_path(), folder)
    if not path.is_file() or path.read_text() != text:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    return path


def site_config() -> Path:
    """The CASA site config in force: the user's ``$CASASITECONFIG`` when set, else almadeliver's
    offline one (written by ``configure_offline``).

    Returns
    -------
    Path
        The site config file.
    """
    return Path(os.environ["CASASITECONFIG"]) if os.environ.get("CASASITECONFIG") else configure_offline()


def offline_environment() -> Path:
    """Make this process ready to import casatools: ``CASASITECONFIG`` and the log file variable
    are set only when unset (the user's own values stay). Call it just before CASA is imported
    in this process; returns the site config in force.

    Returns
    -------
    Path
        The site config in force.
    """
    path = site_config()
    os.environ.setdefault("CASASITECONFIG", str(path))
    os.environ.setdefault(LOGFILE_ENV, str(home() / "casa" / "casa.log"))
    return path


def casa_env(logfile: Path) -> dict[str, str]:
    """The environment of a CASA child process writing its log to ``logfile``: this process's,
    with ``CASASITECONFIG`` set to almadeliver's offline site config unless the user set one.

    Parameters
    ----------
    logfile : Path
        The CASA log file of the child.

    Returns
    -------
    dict[str, str]
        The environment variables.
    """
    env = dict(os.environ)
    env["CASASITECONFIG"] = str(site_config())
    env[LOGFILE_ENV] = str(Path(logfile).resolve())
    return env


# -- external monolithic CASA ----------------------------------------------------------------------
@dataclass(frozen=True)
class MonolithicCasa:
    """An external (tarball) CASA install: ``bin/casa`` and whether it carries the pipeline."""

    executable: Path
    version: str | None
    has_pipeline: bool

    def command(self, script: Path, pipeline: bool = False) -> list[str]:
        """The command line that runs ``script`` in this CASA without GUI or logger (``--pipeline`` for pipeline work).

        Parameters
        ----------
        script : Path
            The Python script to run.
        pipeline : bool, default False
            Start CASA with the pipeline.

        Returns
        -------
        list[str]
            The command line (argument list).
        """
        cmd = [str(self.executable), "--nologger", "--nogui", "--nologfile"]
        if pipeline:
            cmd.append("--pipeline")
        return cmd + ["-c", str(script)]


def find_monolithic_casa(casa: str | Path | None = None) -> MonolithicCasa | None:
    """Find monolithic CASA: ``--casa PATH``, else ``$ALMADELIVER_CASA``, else ``casa`` on PATH.

    A path that was named but is not a CASA install raises ``CasaNotFoundError``.

    Parameters
    ----------
    casa : str | Path | None, default None
        The ``--casa`` path (a ``casa`` executable or its install folder).

    Returns
    -------
    MonolithicCasa | None
        The CASA found (executable, version, pipeline), or None.

    Raises
    ------
    CasaNotFoundError
        A CASA was named (``casa`` or ``$ALMADELIVER_CASA``) but is not a CASA executable or install.
    """
    named = casa or os.environ.get(CASA_ENV)
    if named:
        exe = Path(named).expanduser().absolute()     # relative to where the user typed it
        if exe.is_dir():
            exe = exe / "bin" / "casa"
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise CasaNotFoundError(
                f"no CASA executable at {named}",
                "give --casa the CASA folder or its bin/casa (or unset ALMADELIVER_CASA)",
            )
    else:
        found = shutil.which("casa")
        if not found:
            return None
        exe = Path(found)
    root = exe.resolve().parent.parent
    m = re.search(r"casa-(?:release-)?(\d+\.\d+\.\d+(?:[.-]\d+)?)", str(root))
    has_pipeline = "pipeline" in root.name or any(root.glob("lib/py/lib/python3*/site-packages/pipeline"))
    return MonolithicCasa(exe, m.group(1) if m else None, has_pipeline)


@dataclass(frozen=True)
class CasaInfo:
    """What ``almadeliver casa-info`` reports."""

    casatools_version: str | None
    casatasks_version: str | None
    data_path: Path | None
    site_config: Path
    monolithic: MonolithicCasa | None


def casa_info(casa: str | Path | None = None) -> CasaInfo:
    """Versions of the installed modular CASA, its data path, the site config and any monolithic CASA found.

    Parameters
    ----------
    casa : str | Path | None, default None
        The ``--casa`` path, if any.

    Returns
    -------
    CasaInfo
        The versions and paths.
    """
    def _v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return CasaInfo(_v("casatools"), _v("casatasks"), casadata_path(), site_config(),
                    find_monolithic_casa(casa))


# -- running CASA work in a child process --------------------------------------------------------------
def stream_output(proc: subprocess.Popen, on_line: Callable[[str], None] | None = None, keep: int = 20) -> list[str]:
    """Pass every line a child prints (``stdout=PIPE``, text mode) to ``on_line`` until it closes its output.

    Parameters
    ----------
    proc : subprocess.Popen
        The child, started with ``stdout=subprocess.PIPE`` (stderr merged into it) and ``text=True``.
    on_line : callable, optional
        Receives each line without its newline.
    keep : int
        How many of the last lines to return.

    Returns
    -------
    list of str
        The last ``keep`` lines (the reason of a failure is among them).

    Raises
    ------
    BaseException
        Whatever interrupts the reading (Ctrl-C, an error in ``on_line``), after the child is killed:
        a CASA child never outlives the process that started it.
    """
    assert proc.stdout is not None
    return stream_lines(proc.stdout, proc.kill, on_line, keep)


def stream_lines(lines: Iterable[str], kill: Callable[[], None], on_line: Callable[[str], None] | None = None,
                 keep: int = 20) -> list[str]:
    """``stream_output`` for any source of a child's lines.

    Parameters
    ----------
    lines : Iterable[str]
        The child's output lines (with their newlines).
    kill : callable
        Ends the child; called when the reading is interrupted, before the exception goes on.
    on_line : callable, optional
        Receives each line without its newline.
    keep : int
        How many of the last lines to return.

    Returns
    -------
    list of str
        The last ``keep`` lines.
    """
    tail: list[str] = []
    try:
        for line in lines:
            line = line.rstrip("\n")
            tail = (tail + [line])[-keep:]
            if on_line:
                on_line(line)
    except BaseException:
        kill()
        raise
    return tail


def last_words(tail: list[str], code: int | None) -> str:
    """The reason a child gave for failing: its last non-blank line, else its exit code.

    Parameters
    ----------
    tail : list[str]
        The last output lines of the child.
    code : int | None
        Its exit code.

    Returns
    -------
    str
        The reason, one line.
    """
    return next((line for line in reversed(tail) if line.strip()), f"exit code {code}")


def task_in_casa(task: str, **kwargs: Any) -> Any:
    """Run the casatasks task named ``task`` with ``kwargs``: for ``run_in_casa(task_in_casa, {"task": ...})``,
    so that the caller never imports casatasks (CASA starts in the child only).

    Parameters
    ----------
    task : str
        The casatasks task name.
    **kwargs
        Its arguments.

    Returns
    -------
    Any
        What the task returns.
    """
    import casatasks

    return getattr(casatasks, task)(**kwargs)


def run_in_casa(
    func: Callable[..., Any],
    kwargs: dict[str, Any] | None = None,
    *,
    workdir: Path,
    logfile: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> Any:
    """Call ``func(**kwargs)`` in a fresh process with the offline CASA runtime: a fork of this process's
    warm CASA (``casa.warm``: CASA imported once per process), or a new Python when that is off or busy.

    Parameters
    ----------
    func : callable
        A function defined at the top level of an almadeliver module (the child imports it by name).
    kwargs : dict, optional
        Its keyword arguments; they and the return value travel as JSON.
    workdir : Path
        The child's working folder (made if missing).
    logfile : Path, optional
        CASA's log file; default ``workdir/casa.log``.
    on_line : callable, optional
        Receives every line the child prints.
    timeout : float, optional
        Seconds to wait for the child once its output closed.

    Returns
    -------
    object
        What ``func`` returned, through JSON.

    Raises
    ------
    TypeError
        ``func`` is not a top-level function of an importable module.
    CasaError
        The child failed (the reason and the log file named) or did not finish in ``timeout``.
    """
    name = f"{func.__module__}:{func.__qualname__}"
    if "." in func.__qualname__ or func.__module__ == "__main__":
        raise TypeError(f"run_in_casa needs a top-level function of a module, not {name}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logfile = Path(logfile or workdir / "casa.log").resolve()
    env = casa_env(logfile)
    with tempfile.TemporaryDirectory(prefix="almadeliver-call-") as tmp:
        call = Path(tmp) / "call.json"
        result = Path(tmp) / "result.json"
        request = {"func": name, "kwargs": kwargs or {}, "result": str(result)}
        warm = warm_casa(env, {**env, LOGFILE_ENV: os.devnull})   # the import logs to no call's log
        code = tail = None
        if warm is not None:      # a fork of this process's warm CASA (casatasks already imported)
            lock = warm.lock
            try:
                call.write_text(json.dumps({**request, "parent": warm.proc.pid}))
                code, tail = warm.run(call, workdir, env, logfile,
                                      lambda lines, kill: stream_lines(lines, kill, on_line), timeout)
            except WarmUnavailable:
                forget(warm)      # it had ended (nothing ran): a cold child does the call
                warm = None
            except (EOFError, OSError) as exc:
                forget(warm)
                raise CasaError(f"CASA work failed ({name}): the warm CASA process ended ({exc})",
                                f"see the CASA log {logfile}; ALMADELIVER_CASA_WARM=0 starts a new Python per call") from exc
            except BaseException:
                forget(warm)      # interrupted: the next call starts a new warm process
                raise
            finally:
                lock.release()
        if warm is None:          # a cold child: a fresh Python that imports CASA itself
            call.write_text(json.dumps({**request, "parent": os.getpid()}))
            proc = subprocess.Popen(
                [sys.executable, "-m", "almadeliver.casa.child", str(call)],
                cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, bufsize=1,
            )
            tail = stream_output(proc, on_line)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
        if code is None:
            raise CasaError(f"{name} did not finish in {timeout:.0f} s", f"see the CASA log {logfile}")
        outcome = json.loads(result.read_text()) if result.is_file() else None
    if code != 0 or outcome is None or "error" in outcome:
        reason = (outcome or {}).get("error") or last_words(tail, code)
        raise CasaError(f"CASA work failed ({name}): {reason}", f"see the CASA log {logfile}")
    return outcome["value"]


def preload(*modules: str) -> None:
    """Import ``modules`` in a background thread: started as a CASA child begins, the imports the parent
    needs afterwards (matplotlib, astropy: seconds on a loaded machine) happen while it only waits for
    the child. A module that fails to import is left for the code that needs it to report.

    Parameters
    ----------
    *modules : str
        Dotted module names, e.g. ``"matplotlib.figure"``.
    """
    import threading

    def load() -> None:
        import importlib

        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 (imported again where it is used, which reports the error)
                pass

    threading.Thread(target=load, name="preload", daemon=True).start()
