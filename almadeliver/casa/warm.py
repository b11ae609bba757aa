"""Warm CASA: one process that imports casatools and casatasks once, then forks a child per call.

Importing casatasks imports every task, scipy and matplotlib: about 5 CPU seconds with bytecode
compiled, 12 without (``PYTHONDONTWRITEBYTECODE``), for every CASA child ``run_in_casa`` starts. A
restore, an imaging run or a simulation makes several such calls, and a ``run`` over many MOUS
hundreds. The warm process pays the import once per almadeliver process; each call is a ``fork`` of it
(copy-on-write, a few milliseconds) that runs exactly what the cold child runs (``child._main``),
in its own working folder, environment and CASA log file, and exits. A call's state never leaks into
the next: every call is a fresh process.

Protocol over a Unix socket pair, one call at a time: the caller sends a JSON request with the write
end of a pipe (``SCM_RIGHTS``); the warm process forks, the child's stdout and stderr go to that pipe
(the caller streams its lines as it does a cold child's), and the warm process answers
``{"pid": ...}`` then ``{"exit": code}``. No CASA process outlives the process that started it: the
warm process ends, killing a running call, when the caller's end of the socket closes (the kernel closes
it when the caller dies), and a call ends when the warm process dies (a parent-death signal). Set ``ALMADELIVER_CASA_WARM=0``
to start a cold child per call instead.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

WARM_ENV = "ALMADELIVER_CASA_WARM"
_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise EOFError("the warm CASA process closed its socket")
        chunks += chunk
    return chunks


def _recv(sock: socket.socket, with_fd: bool = False) -> tuple[dict[str, Any], list[int]]:
    if with_fd:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 1)
        if not head:
            raise EOFError("the warm CASA process closed its socket")
        head += _recv_exact(sock, _HEADER.size - len(head))
    else:
        head, fds = _recv_exact(sock, _HEADER.size), []
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(sock, size)), list(fds)


class WarmUnavailable(OSError):
    """The warm process could not take a call (it had ended): nothing ran, a cold child may."""


class WarmCasa:
    """A warm CASA process of this process (see the module doc); ``run`` makes one call in a fork of it.

    Parameters
    ----------
    env : dict
        The calls' environment (``runtime.casa_env``): its site config, ``OMP_NUM_THREADS`` and the
        like are read once, at import (``warm_key``).
    import_env : dict, optional
        The environment of the import itself, when it differs (its CASA log file: the import's log
        lines belong to no call; each call's log gets its own, ``_call``).

    Raises
    ------
    OSError
        The warm process could not start or did not import CASA (the caller then starts cold children).
    """

    def __init__(self, env: dict[str, str], import_env: dict[str, str] | None = None) -> None:
        ours, theirs = socket.socketpair()
        self.key = warm_key(env)
        env = import_env or env
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-m", "almadeliver.casa.warm", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=env.get("HOME", "/"))
        theirs.close()
        self.sock = ours
        try:
            ready, _ = _recv(self.sock)
        except (EOFError, OSError) as exc:
            self.close()
            raise OSError(f"the warm CASA process did not start: {exc}") from exc
        if "error" in ready:
            self.close()
            raise OSError(f"the warm CASA process could not import CASA: {ready['error']}")

    def alive(self) -> bool:
        """Whether the warm process still runs.

        Returns
        -------
        bool
            True while it runs.
        """
        return self.proc.poll() is None

    def run(self, call: Path, workdir: Path, env: dict[str, str], logfile: Path,
            stream: Callable[[Any, Callable[[], None]], list[str]], timeout: float | None) -> tuple[int | None, list[str]]:
        """Run the call written in ``call`` (the cold child's call file, ``parent`` this warm process) in a fork, in ``workdir`` with ``env``.

        Parameters
        ----------
        call : Path
            The call file (function, keyword arguments, result file).
        workdir : Path
            The call's working folder.
        env : dict
            The call's environment.
        logfile : Path
            CASA's log file for the call.
        stream : callable
            ``stream(lines, kill) -> tail``: reads the call's output lines (a text file object) until
            they end; calls ``kill()`` before re-raising whatever interrupts it.
        timeout : float, optional
            Seconds to wait for the exit once the output ended; None waits forever.

        Returns
        -------
        tuple
            The call's exit code (None when it did not end in ``timeout``; it is then killed) and the
            last lines it printed.

        Raises
        ------
        WarmUnavailable
            The warm process was gone before the call started (nothing ran).
        EOFError
            The warm process died during the call.
        """
        read, write = os.pipe()
        try:
            _send(self.sock, {"call": str(call), "cwd": str(workdir), "env": env, "logfile": str(logfile)}, [write])
            os.close(write)
            pid = _recv(self.sock)[0]["pid"]
        except (EOFError, OSError) as exc:          # nothing ran: the caller may start a cold child
            for fd in (read, write):
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise WarmUnavailable(str(exc)) from exc
        with os.fdopen(read, "r", buffering=1, errors="replace") as lines:

            def kill() -> None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            tail = stream(lines, kill)
        self.sock.settimeout(timeout)
        try:
            return _recv(self.sock)[0]["exit"], tail
        except socket.timeout:
            kill()
            self.sock.settimeout(None)
            _recv(self.sock)
            return None, tail
        finally:
            self.sock.settimeout(None)

    def close(self) -> None:
        """End the warm process (its running call, if any, ends with it) and reap it."""
        self.sock.close()                             # it ends when it sees the socket close
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def warm_key(env: dict[str, str]) -> tuple[str, ...]:
    """What a warm process fixed at import: a call with another key needs another warm process.

    Parameters
    ----------
    env : dict[str, str]
        A CASA child's environment (``runtime.casa_env``).

    Returns
    -------
    tuple of str
        The Python, site config, OpenMP threads, PYTHONPATH and almadeliver home it names.
    """
    return (sys.executable, env.get("CASASITECONFIG", ""), env.get("OMP_NUM_THREADS", ""),
            env.get("PYTHONPATH", ""), env.get("ALMADELIVER_HOME", ""))


_WARM: dict[tuple[str, ...], WarmCasa] = {}
_WARM_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Reap the warm processes when this process ends (they would end by themselves, unreaped)."""
    for warm in list(_WARM.values()):
        forget(warm)


def warm_casa(env: dict[str, str], import_env: dict[str, str] | None = None) -> WarmCasa | None:
    """This process's warm CASA for ``env`` (started on first use), locked for the caller.

    Parameters
    ----------
    env : dict[str, str]
        The call's environment (``runtime.casa_env``).
    import_env : dict[str, str] | None, default None
        The environment a new warm process imports CASA in (``WarmCasa``).

    Returns
    -------
    WarmCasa | None
        The warm process, its ``lock`` held (the caller releases it when its call is over); None when
        warm CASA is off (``ALMADELIVER_CASA_WARM=0``), busy with another thread's call, or cannot start.
    """
    if os.environ.get(WARM_ENV, "1") == "0":
        return None
    key = warm_key(env)
    with _WARM_LOCK:
        warm = _WARM.get(key)
        if warm is not None and not warm.alive():
            warm.close()
            del _WARM[key]
            warm = None
        if warm is None:
            try:
                warm = _WARM[key] = WarmCasa(env, import_env)
            except OSError:
                return None
    return warm if warm.lock.acquire(blocking=False) else None


def forget(warm: WarmCasa) -> None:
    """Close ``warm`` and forget it (after a call was interrupted or the process died).

    Parameters
    ----------
    warm : WarmCasa
        The warm process to end.
    """
    with _WARM_LOCK:
        if _WARM.get(warm.key) is warm:
            del _WARM[warm.key]
    warm.close()


# -- the warm process ------------------------------------------------------------------------------------
def _serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the caller's to handle: it kills the call
    try:
        import casatasks  # noqa: F401  (the point: every task imported once, before the forks)
        import casatools  # noqa: F401
    except BaseException as exc:                    # report it: the caller falls back to cold children
        _send(sock, {"error": f"{type(exc).__name__}: {exc}"})
        return
    _send(sock, {"ready": True})
    while True:
        try:
            request, fds = _recv(sock, with_fd=True)
        except (EOFError, OSError):
            return                                    # the caller is gone
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _call(sock, request, fds[0])
        os.close(fds[0])
        _send(sock, {"pid": pid})
        status = _wait_or_caller_gone(sock, pid)
        if status is None:
            return                                    # the caller is gone: so is its call
        _send(sock, {"exit": os.waitstatus_to_exitcode(status)})


def _wait_or_caller_gone(sock: socket.socket, pid: int) -> int | None:
    """The wait status of call ``pid``; or None once the caller closed the socket (it died: a caller
    sends nothing while its call runs), after killing the call's process group.

    Not a parent-death signal: Linux sends that when the *thread* that started this process ends,
    and a caller's threads come and go (dask runs tasks in a thread pool)."""
    try:
        watch = [sock, os.pidfd_open(pid)]
    except (AttributeError, OSError):                 # no pidfd (not Linux 5.3+): look every 0.2 s
        watch = [sock]
    try:
        while True:
            ready, _, _ = select.select(watch, [], [], 0.2)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if sock in ready and not sock.recv(1, socket.MSG_PEEK):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                return None
    finally:
        for fd in watch[1:]:
            os.close(fd)


def _call(sock: socket.socket, request: dict[str, Any], out: int) -> None:
    """(the forked child) Become the call: own process group, output to the caller's pipe, the call's
    folder, environment and CASA log; run it as a cold child would, and exit."""
    code = 1
    try:
        sock.close()
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]                  # as `python -m` in that folder puts it
        import platform

        import casatasks

        casatasks.casalog.setlogfile(request["logfile"])
        # the lines casatasks posts on import, which every CASA log opens with (the staff checklist
        # reads the version from them): this call's log is new, the import was in the warm process
        casatasks.casalog.post("Python version " + platform.python_version())
        casatasks.casalog.post(f"CASA Version {casatasks.package_variant.upper()} {casatasks.version_string()}")
        from . import child

        code = child._main(request["call"])        # its "parent" is this warm process
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
