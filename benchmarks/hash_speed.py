"""Digest speed on one mammogram's worth of bytes: the catalog's BLAKE3 against SHA-256 (the
digest before migration 0004) and hashlib's BLAKE2b (the other candidate).

    python -m benchmarks.hash_speed                 # 17 MB, 1 MiB updates, 20 repeats

Why: the digest runs on the receive path of every C-STORE (scp/digest.py), so its CPU per
image is part of the ingest's CPU per image (docs/benchmarks.md, "Ingest"). BLAKE3 and SHA-256
go through the node's own ``scp.digest.new_hasher``; BLAKE2b has no place in the node and is
timed from hashlib. The bytes arrive in 1 MiB pieces, as P-DATA does (our PDUs are 1 MB).
Printed per algorithm: CPU ms per image (this process's CPU time, less sensitive to other
jobs than the wall clock; median and best of the repeats), the GB per CPU second that median
makes, and GB/s on the wall clock (median and best), which falls when other jobs share the
cores. One thread: the receive path runs one hasher per association.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

import numpy as np

from scp.digest import new_hasher

CHUNK = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mb", type=float, default=17.0, help="bytes per image, in MB (1e6)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def time_one(make, data: memoryview, repeats: int) -> tuple[list[float], list[float]]:
    """CPU seconds and wall seconds of each of ``repeats`` digests of ``data``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        h = make()
        for i in range(0, len(data), CHUNK):
            h.update(data[i : i + CHUNK])
        h.hexdigest()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def main(argv=None) -> int:
    args = parse_args(argv)
    size = int(args.mb * 1e6)
    data = memoryview(np.random.default_rng(args.seed).bytes(size))
    candidates = {
        "blake3 (scp.digest, the catalog's)": lambda: new_hasher("blake3"),
        "sha256 (scp.digest, rows before 0004)": lambda: new_hasher("sha256"),
        "blake2b (hashlib)": hashlib.blake2b,
    }
    print(f"{size / 1e6:g} MB per image, {CHUNK >> 20} MiB updates, {args.repeats} repeats")
    print(
        f"{'algorithm':40} {'CPU ms/image':>12} {'best':>6} {'GB/CPU s':>9} "
        f"{'wall GB/s':>10} {'best':>6}"
    )
    for name, make in candidates.items():
        time_one(make, data, 1)  # warm: first touch of the buffer and the code
        cpu, wall = time_one(make, data, args.repeats)
        rates = [size / w / 1e9 for w in wall]
        ms = 1000 * statistics.median(cpu)
        print(
            f"{name:40} {ms:12.1f} {1000 * min(cpu):6.1f} {size / ms / 1e6:9.2f} "
            f"{statistics.median(rates):10.2f} {max(rates):6.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
