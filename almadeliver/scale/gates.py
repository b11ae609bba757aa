"""Connection gates: one lease per archive connection, shared by every worker of a run.

A gate is called with the archive host and returns a context manager (a semaphore) that the
download engine holds while it requests and reads file bytes (``TransferConfig.connection_gate``).
On Dask it is a named ``distributed.Semaphore`` kept by the scheduler; on the process pool it is a
semaphore living in a small manager process. Gates are picklable: they travel inside each task.
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from multiprocessing.managers import AcquirerProxy, BaseManager

_lock = threading.Lock()
_semaphores: dict[tuple, AbstractContextManager] = {}   # per process: (kind, host, ...) -> semaphore


def semaphore_name(host: str) -> str:
    """The name of the Dask semaphore that holds ``host``'s connections."""
    return f"almadeliver-conn-{host}"


@dataclass(frozen=True)
class DaskGate:
    """``connections`` leases per archive host across the whole Dask cluster."""

    connections: int

    def __call__(self, host: str) -> AbstractContextManager:
        """The cluster-wide semaphore of ``host`` (made once per process)."""
        from distributed import Semaphore

        with _lock:
            key = ("dask", host, self.connections)
            if key not in _semaphores:
                _semaphores[key] = Semaphore(max_leases=self.connections, name=semaphore_name(host))
            return _semaphores[key]


# -- the process pool: semaphores served by a manager process ------------------------------------------
_served: dict[str, threading.BoundedSemaphore] = {}     # in the manager process


def _serve_semaphore(name: str, leases: int) -> threading.BoundedSemaphore:
    with _lock:
        return _served.setdefault(name, threading.BoundedSemaphore(leases))


class GateManager(BaseManager):
    """Holds the per-host semaphores of a process-pool run (start() it in the driver)."""


GateManager.register("semaphore", _serve_semaphore, proxytype=AcquirerProxy)


@dataclass(frozen=True)
class PoolGate:
    """``connections`` leases per archive host across the processes of one pool (and its restarts)."""

    address: str | tuple
    connections: int

    def __call__(self, host: str) -> AbstractContextManager:
        """The pool-wide semaphore of ``host``, served by the manager process (made once per process)."""
        with _lock:
            key = ("pool", self.address, host)
            if key not in _semaphores:
                manager = GateManager(address=self.address)   # the pool's children share the driver's authkey
                manager.connect()
                _semaphores[key] = manager.semaphore(semaphore_name(host), self.connections)
            return _semaphores[key]
