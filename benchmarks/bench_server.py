"""Local archive throughput: one curl stream on loopback vs reading the file, and the throttle's accuracy.

Writes a 1 GiB tarball-sized file in a temporary folder (page-cached after the first read), serves it
with LocalArchive and downloads it with curl to /dev/null. Prints ratios: server stream vs
`cat file > /dev/null`, vs the 1 GB/s target, a throttled stream vs its cap, and the latency and
slow-first-byte faults vs the delay asked.

    .venv/bin/python benchmarks/bench_server.py [--size-mb 1024]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from almadeliver.sim.catalogue import FILES_DIR, Catalogue, CatalogueFile
from almadeliver.sim.archive import LocalArchive

PROJECT = "2017.1.01185.S"
NAME = f"{PROJECT}_uid___A001_X12a3_Xe9_001_of_001.tar"


def make_archive(root: Path, size: int) -> Path:
    files = root / PROJECT / FILES_DIR
    files.mkdir(parents=True)
    block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    with open(files / NAME, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
    Catalogue(PROJECT, False, [], [CatalogueFile(NAME, "#this", "application/x-tar", (files / NAME).stat().st_size,
                                                 ["uid://A001/X12a3/Xe9"])]).save(root / PROJECT)
    return files / NAME


def timed(cmd: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def curl(url: str) -> tuple[float, int]:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for this benchmark")
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        path = make_archive(Path(tmp), args.size_mb << 20)
        size = path.stat().st_size
        timed(["cat", str(path)])                                  # warm the page cache
        cat = min(timed(["sh", "-c", f"cat '{path}' > /dev/null"]) for _ in range(3))
        with LocalArchive(Path(tmp)) as archive:
            url = f"{archive.url}/dataPortal/{NAME}"
            runs = [curl(url) for _ in range(3)]
            assert all(n == size for _, n in runs), "curl did not get the whole file"
            best = min(t for t, _ in runs)
            cap = 20e6
            archive.faults.throttle = cap
            # a 40 MB range under the 20 MB/s cap: about 2 s
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", "0-39999999", "-w", "%{time_total} %{size_download}", url],
                                 check=True, capture_output=True, text=True).stdout.split()
            throttled, got = float(out[0]), int(out[1])
            archive.faults.throttle = None
            # the latency and slow-first-byte faults (moved here from tests/test_serve_files.py): ratios to the asked delay
            archive.faults.latency = 0.3
            began = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"{archive.url}/tap/availability"], check=True)
            latency = time.perf_counter() - began
            archive.faults.latency = 0.0
            archive.faults.slow_first_byte = 0.4
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", "0-999", "-w",
                                  "%{time_total} %{time_starttransfer}", url],
                                 check=True, capture_output=True, text=True).stdout.split()
            first_byte = float(out[0]) - float(out[1])   # from the headers to the end of a 1000-byte body
        gbps = size / best / 1e9
        cat_gbps = size / cat / 1e9
        print(f"file                     {size / 1e9:.2f} GB (page-cached)")
        print(f"cat file > /dev/null     {cat_gbps:.2f} GB/s")
        print(f"one curl stream          {gbps:.2f} GB/s  (best of 3; runs {', '.join(f'{size / t / 1e9:.2f}' for t, _ in runs)})")
        print(f"ratio stream / cat       {gbps / cat_gbps:.2f}")
        print(f"ratio stream / 1 GB/s    {gbps:.2f}  ({'meets' if gbps >= 1 else 'BELOW'} the 1 GB/s target)")
        print(f"throttled stream         {got / throttled / 1e6:.1f} MB/s under a {cap / 1e6:.0f} MB/s cap "
              f"(ratio {got / throttled / cap:.2f})")
        print(f"latency fault            {latency:.2f} s for 0.3 s asked (ratio {latency / 0.3:.2f}, at least 1 expected)")
        print(f"slow-first-byte fault    {first_byte:.2f} s for 0.4 s asked (ratio {first_byte / 0.4:.2f}, at least 1 expected)")


if __name__ == "__main__":
    main()
