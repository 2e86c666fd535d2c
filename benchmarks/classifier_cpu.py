"""The classifier's CPU path, before and after, on the same weights and the same views.

Why: the worker's classify (and ``sgc evaluate``) spent as much system time as user time on a
CPU: memory churn, not arithmetic. This script runs an older source tree of the
node (``--before DIR``, e.g. ``git archive <commit> | tar -x -C DIR``) and the working tree,
each in its own process, alternating, on the same synthetic 4-view studies written to disk
once, for both models (``--models DIR``; default the bundled ones):

* ``lesion``: the default lesion finder, ``ViewModel.classify`` on DICOM views (the worker's
  call: preprocessing, scan, refine);
* ``whole-view``: the whole-view model (``SGC_MODEL``), ``Classifier.classify`` on the views'
  preprocessed tensors (what ``sgc evaluate`` and the worker run after preprocessing).

Each tree runs with its worker's default torch threads (before: torch's, one per core;
after: ``SGC_TORCH_THREADS``) unless ``--threads`` sets both. Printed per run: views per second (wall clock), CPU ms per view (user and system), and
whether every output equals the other tree's (probabilities, log-likelihoods, findings,
evidence maps; exact equality, not a tolerance). The load average is printed around the runs.
``--busy N`` keeps N busy-loop processes running meanwhile, as a node's SCP or a second worker
would take a core.

    .venv/bin/python -m benchmarks.classifier_cpu --before /tmp/sgc-before --studies 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.host_cpu import load

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "sgc_core" / "models"
# Read before this process imports sgc_core, which sets a default for its own children.
_USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")

# Run a source tree in a child: drop the venv's editable finder (it would import the working
# tree whatever sys.path says), put the tree first, then call this file's child().
_CHILD = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[2])
runpy.run_path(sys.argv[1])["child"](*sys.argv[2:7])
"""


def child(tree: str, kind: str, folder: str, out: str, models: str) -> None:
    """In the child process: classify every view in ``folder`` with ``tree``'s code and the
    model in ``models``. sgc_core comes before torch, as in the worker (it sets how torch's
    threads wait)."""
    from sgc_core.view_model import load_view_model  # isort: skip
    import torch
    from pydicom import dcmread

    paths = sorted(Path(folder).glob("*.dcm"))
    datasets = [dcmread(p) for p in paths]
    name = "sgc-lesion-mammo" if kind == "lesion" else "sgc-demo-mammo"
    model = load_view_model(Path(models) / f"{name}.safetensors")
    if kind == "lesion":

        def run():
            return [r.to_dict() | {"emap": _emap(r)} for r in model.classify(datasets)]
    else:
        from sgc_core.preprocess import preprocess_dataset

        x = torch.stack([preprocess_dataset(ds, model.config).tensor for ds in datasets])

        def run():
            return [r.__dict__ for r in model.classifier.classify(x)]

    run()  # warm-up, off the clock: a worker classifies all day, so steady state counts
    c0, t0 = os.times(), time.perf_counter()
    results = run()
    c1, t1 = os.times(), time.perf_counter()
    timing = {
        "views": len(paths),
        "wall": t1 - t0,
        "user": c1.user - c0.user,
        "system": c1.system - c0.system,
        "threads": torch.get_num_threads(),
    }
    Path(out).write_text(json.dumps({"timing": timing, "results": results}, default=str))


def _emap(result) -> list | None:
    ev = result.evidence
    return None if ev is None else ev.values.tolist()


def write_views(folder: Path, studies: int) -> None:
    from sgc_core.synth.study import generate_study

    folder.mkdir(parents=True)
    for s in range(studies):
        for v, ds in enumerate(generate_study(1000 + s)):
            ds.save_as(folder / f"{s:03d}-{v}.dcm", enforce_file_format=True)


def run_tree(tree: Path, kind: str, views: Path, args, threads: int | None) -> dict:
    out = args.scratch / f"{tree.name}-{kind}.json"
    cmd = [sys.executable, "-c", _CHILD, __file__, str(tree), kind, str(views), str(out)]
    cmd.append(str(args.models))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if _USER_WAIT_POLICY is not None:  # else each tree's own default (sgc_core sets it after)
        env["OMP_WAIT_POLICY"] = _USER_WAIT_POLICY
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads
    subprocess.run(cmd, check=True, cwd=args.scratch, env=env)
    return json.loads(out.read_text())


def check_models(folder: Path) -> None:
    """Refuse, in one line and before any view is written, a folder without both models."""
    names = ("sgc-lesion-mammo", "sgc-demo-mammo")
    missing = [f"{n}{e}" for n in names for e in (".safetensors", ".json")]
    missing = [m for m in missing if not (folder / m).is_file()]
    if missing:
        raise SystemExit(f"--models {folder}: missing {', '.join(missing)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="older source tree")
    parser.add_argument("--studies", type=int, default=2, help="4-view studies to classify")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per model")
    parser.add_argument("--kinds", nargs="+", default=["whole-view", "lesion"])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both trees (default: each tree's worker default)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=MODELS,
        help="folder with sgc-lesion-mammo and sgc-demo-mammo (default: the bundled ones); "
        "an older tree may not read a newer card",
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="busy-loop processes kept running meanwhile (a core taken by the SCP or another "
        "worker)",
    )
    args = parser.parse_args(argv)
    check_models(args.models)
    args.scratch = scratch = Path(tempfile.mkdtemp(prefix="sgc-clf-cpu-"))
    trees = {"before": args.before.resolve(), "after": ROOT}
    # Each tree's worker default: torch's own (one thread per core) before SGC_TORCH_THREADS.
    from sgc_config.settings import Settings

    defaults = {"before": None, "after": Settings.model_fields["torch_threads"].default or None}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        compare(args, trees, defaults, scratch)
    finally:
        for p in busy:
            p.kill()
        shutil.rmtree(scratch, ignore_errors=True)


def compare(args, trees: dict, defaults: dict, scratch: Path) -> None:
    """Write the views once, then alternate the trees per model and compare their outputs."""
    views = scratch / "views"
    write_views(views, args.studies)
    print(
        f"{args.studies} synthetic 4-view studies; before: {args.before}; after: {ROOT}; "
        f"models: {args.models}; busy processes: {args.busy}; OMP_WAIT_POLICY set by the user: "
        f"{_USER_WAIT_POLICY or 'no'}"
    )
    for kind in args.kinds:
        print(f"load average before {kind}: {load()}", flush=True)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        outputs: dict[str, list] = {}
        for r in range(args.rounds):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                threads = args.threads if args.threads is not None else defaults[name]
                got = run_tree(trees[name], kind, views, args, threads)
                t = got["timing"]
                runs[name].append(t)
                outputs.setdefault(name, got["results"])
                cpu = 1000 * (t["user"] + t["system"]) / t["views"]
                print(
                    f"  {kind} round {r + 1} {name:6s} {t['views'] / t['wall']:6.2f} views/s, "
                    f"CPU {cpu:6.0f} ms/view (user {t['user']:.1f} s, system "
                    f"{t['system']:.1f} s, {t['threads']} torch threads)",
                    flush=True,
                )
        rate = {n: statistics.median(t["views"] / t["wall"] for t in v) for n, v in runs.items()}
        cpu = {
            n: statistics.median(1000 * (t["user"] + t["system"]) / t["views"] for t in v)
            for n, v in runs.items()
        }
        same = outputs["before"] == outputs["after"]
        print(
            f"{kind}: {rate['after']:.2f} vs {rate['before']:.2f} views/s "
            f"({rate['after'] / rate['before']:.2f}x), CPU {cpu['after']:.0f} vs "
            f"{cpu['before']:.0f} ms/view ({cpu['before'] / cpu['after']:.2f}x less); outputs "
            f"{'identical' if same else 'DIFFER'}; load average after: {load()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
