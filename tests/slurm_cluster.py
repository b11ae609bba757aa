"""A real single-node SLURM cluster for the tests, started as root in a temporary folder in seconds.

Debian's slurm-wlm and munge (installed by scripts/system-deps.d/slurm.sh): munged with a key made
here and its own socket, slurmctld and slurmd in the foreground (so their pids are ours), a minimal
slurm.conf (the node is this machine, CPUs=2, one default partition; state, spool, pid and log files
in the folder), ``SLURM_CONF`` pointing at it. ``stop()`` cancels the jobs left and ends every
daemon it started, by pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")
PARTITION = "almadeliver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    """``start()`` / ``stop()`` a single-node SLURM cluster; ``env`` is the environment of its clients."""

    def __init__(self, cpus: int = 2):
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]         # hostname -s
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    # -- what a test needs ---------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=30, check=check)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (running, pending, and finished in the last MinJobAge)."""
        out = self.command("scontrol", "show", "job", "-o", check=False).stdout
        jobs = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                jobs.append(dict(word.split("=", 1) for word in line.split() if "=" in word))
        return jobs

    # -- start / stop ---------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        return [c for c in (*DAEMONS, *CLIENTS) if shutil.which(c, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        self.root = Path(tempfile.mkdtemp(prefix="almadeliver-slurm-"))
        self.root.chmod(0o755)                 # munged wants its socket's folders open to all
        run, secret = self.root / "run", self.root / "munge"
        for d in ("state", "spool", "log", "run", "munge"):
            (self.root / d).mkdir()
        run.chmod(0o755)
        key = secret / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = run / "munge.socket"
        self._spawn("munged", ["munged", "--foreground", f"--key-file={key}", f"--socket={sock}",
                               f"--pid-file={run / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                               f"--seed-file={secret / 'munged.seed'}"])
        self._wait(lambda: sock.exists(), timeout, "munged made no socket")

        memory = int(_memory_mb() * 0.9)
        node = f"{self.node}(127.0.0.1)"
        self.conf.write_text("\n".join([
            "ClusterName=almadeliver-test",
            f"SlurmctldHost={node}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={sock}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "KillWait=5",                      # a cancelled job's processes get SIGKILL 5 s after SIGTERM
            "MinJobAge=600",                   # finished jobs stay visible to `scontrol show job`
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={run / 'slurmctld.pid'}",
            f"SlurmdPidFile={run / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])

        def idle() -> bool:
            out = self.command("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
            return out == ["idle"]
        self._wait(idle, timeout, "the node did not become idle")
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            stdin=subprocess.DEVNULL)
        out.close()

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:])
                                 for f in sorted((self.root / "log").glob("*")))
                self.stop()
                raise RuntimeError(f"SLURM test cluster: {what} (ended: {dead or 'none'})\n{logs}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel the jobs left, then end slurmd, slurmctld and munged (in that order, by pid)."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.command("scancel", "--partition", PARTITION, check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.command(
                    "squeue", "-h", "-o", "%i", check=False).stdout.strip():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
