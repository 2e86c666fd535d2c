"""How long `sgc synth` takes per study, per style and size, and what a full-size image costs
to write and to preprocess.

    python -m benchmarks.synth_speed                  # the three tables, ~3 min here
    python -m benchmarks.synth_speed --skip-full      # the per-size table only

Why: docs/synthetic.md tells a user how long a set of a given size and style takes to write,
and how much of the serving path's time a full-size or JPEG 2000 image costs; those figures
need a command that prints them. Every study goes through ``sgc_core.synth.write_dataset``
(what `sgc synth` runs) with one process, into a scratch folder.

Printed:
1. CPU seconds per 4-view study (this process's CPU time; the median of ``--repeats``
   studies, seeds 0, 1, ...) per style at `small`, 582x448 (~0.4 mm) and `medium`;
2. per family style one `full` (3328x2560) study in a fresh process: its CPU seconds and the
   process's peak memory (ru_maxrss);
3. one `full` classic study written uncompressed and as JPEG 2000 lossless (wall seconds and
   bytes per image), and ``preprocess_file`` of one image of each to 256 px, without and with
   CLAHE (wall seconds, the median of ``--repeats``).
The wall clock counts what other jobs take of the cores: read it with the load average.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sgc_core.synth import write_dataset

STYLES = ("classic", "gauss", "lumpy", "ligament", "strands", "ducts")
SIZES = ("small", "582x448", "medium")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="studies (or calls) per median")
    p.add_argument("--skip-full", action="store_true", help="only the per-size table")
    return p.parse_args(argv)


def cpu_per_study(style: str, size: str, seed: int, jpeg2000: bool = False) -> float:
    """CPU seconds of writing one 4-view study (generation, encoding, files)."""
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as out:
        c0 = time.process_time()
        write_dataset(out, 1, seed=seed, size=size, style=style, hold_out=None, jpeg2000=jpeg2000)
        return time.process_time() - c0


def full_study_in_child(style: str) -> tuple[float, float]:
    """CPU seconds and peak memory (GB) of one full-size study, run in its own process."""
    cpu = cpu_per_study(style, "full", 0)
    return cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def per_size_table(repeats: int) -> None:
    print(f"1. CPU s per 4-view study, median of {repeats}")
    print(f"{'style':10}" + "".join(f"{s:>12}" for s in SIZES))
    for style in STYLES:
        cells = [
            statistics.median(cpu_per_study(style, size, seed) for seed in range(repeats))
            for size in SIZES
        ]
        print(f"{style:10}" + "".join(f"{c:12.2f}" for c in cells), flush=True)


def full_table() -> None:
    print("2. one full (3328x2560) study per family style, each in a fresh process")
    print(f"{'style':10} {'CPU s':>8} {'peak GB':>8}")
    for style in STYLES[1:]:
        with ProcessPoolExecutor(max_workers=1) as pool:
            cpu, peak = pool.submit(full_study_in_child, style).result()
        print(f"{style:10} {cpu:8.1f} {peak:8.2f}", flush=True)


def full_files_and_preprocess(repeats: int) -> None:
    from sgc_core.preprocess import PreprocessConfig, preprocess_file

    print("3. one full classic study, uncompressed and JPEG 2000 lossless; preprocess to 256 px")
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as scratch:
        for jpeg2000 in (False, True):
            out = Path(scratch) / ("j2k" if jpeg2000 else "raw")
            w0 = time.perf_counter()
            write_dataset(out, 1, size="full", style="classic", jpeg2000=jpeg2000)
            wall = time.perf_counter() - w0
            files = sorted(out.glob("images/*/*.dcm"))
            mb = statistics.mean(f.stat().st_size for f in files) / 1e6
            name = "JPEG 2000" if jpeg2000 else "uncompressed"
            print(f"{name:12} study written in {wall:.1f} s wall, {mb:.1f} MB per image")
            for clahe in (False, True):
                config = PreprocessConfig(image_size=(256, 256), clahe=clahe)
                times = []
                for _ in range(repeats):
                    p0 = time.perf_counter()
                    preprocess_file(files[0], config)
                    times.append(time.perf_counter() - p0)
                print(
                    f"{name:12} preprocess_file to 256 px{' with CLAHE' if clahe else ''}: "
                    f"{statistics.median(times):.2f} s wall (median of {repeats})",
                    flush=True,
                )


def main(argv=None) -> int:
    args = parse_args(argv)
    per_size_table(args.repeats)
    if not args.skip_full:
        full_table()
        full_files_and_preprocess(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
