"""Whole views scanned window by window: the SGC finder's windows against a CNN's, same scan.

    python -m benchmarks.lesion_cnn_scan --data DRAW/family --sgc FINDER --views 160 \\
        --test-views 120 --steps 3000 --json OUT.json

Why: on centred crops the finder's network tells lesion from normal tissue well (0.5.0: AUC
0.91 on test crops) while its whole-view AUC stays near 0.59. A view's score is the maximum
over ~100 windows, so a window classifier must be right in the far tail of the normal
windows, which a crop AUC does not measure. This benchmark asks the same question of the
discriminative baseline, so the two can be told apart: is the gap the SGC's window scores,
or the scan itself (which would fail any window classifier)?

The CNN of ``benchmarks/lesion_quality.py`` (same architecture, learning rate and class-
balanced batches) is trained on the draw's training crops at the given budget, and its
temperature fitted on validation crops. Every view of the first ``--views`` validation and
``--test-views`` test views is cut into the finder's windows (``lesion_scan.window_grid`` with
the card's crop, stride and breast fraction), and with ``--held-out`` the first
``--held-out-views`` views of a held-out style's folder (as ``lesion_eval`` takes them); each
window classifier scores them all:

- the CNN: P(class) of each window; the ``refine_top`` windows of highest P(lesion) (half a
  window apart) are re-centred on the best of a stride/4 grid within half a stride, as the
  finder re-centres on its evidence peak, and the view's score is the top candidate's
  malignant log-odds (the finder's view feature);
- the SGC (``--sgc``): the finder's own coarse pass (its card's noise plan and coarse
  temperature, the numbers it ranks windows by); ``--sgc-set k_coarse=4`` adds a row with
  more (t, eps) pairs per window, to tell the score's noise from the network's limit.

Printed per split and model: the view AUC of malignant vs rest and vs benign lesion from the
coarse windows' maximum malignant log-odds (and, for the CNN, from the refined candidates),
the top finding's hit rate on malignant lesions (``lesion_fit.is_hit``), and where the
lesion's own window (the one whose centre lies within half a stride of the lesion) ranks
among its view's windows by P(lesion): the fraction ranked first and within ``refine_top``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class ViewRow:
    """One view as one window classifier saw it."""

    model: str
    split: str
    finding: str
    windows: int
    coarse_logit: float  # max malignant log-odds over the grid's windows
    top_logit: float  # the top candidate's malignant log-odds (refined where the model refines)
    top_hit: bool | None  # the top finding on the malignant lesion (malignant views only)
    lesion_rank: int | None  # 1-based rank of the lesion's window by P(lesion)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a `sgc synth` family folder")
    p.add_argument("--crops", type=Path, default=None, help="its crop set (default DATA/crops.npz)")
    p.add_argument("--sgc", type=Path, default=None, help="a lesion finder to scan beside it")
    p.add_argument(
        "--sgc-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also scan with the SGC's card setting changed (e.g. k_coarse=4); repeatable",
    )
    p.add_argument("--card", type=Path, default=None, help="windows from this finder's card")
    p.add_argument("--views", type=int, default=160, help="first N validation views")
    p.add_argument("--test-views", type=int, default=0, help="first N test views (report only)")
    p.add_argument("--held-out", type=Path, default=None, help="a held-out style's synth folder")
    p.add_argument("--held-out-views", type=int, default=80, help="its first N views (any split)")
    p.add_argument("--steps", type=int, default=3000, help="the CNN's optimiser steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-max", type=int, default=400, help="validation crops for the temperature")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write every view's row here")
    return p.parse_args(argv)


def train_window_cnn(args):
    """The CNN of lesion_quality (its ``train_cnn``) on the draw's training crops; its logits
    as a score function, with the temperature fitted on validation crops."""
    from types import SimpleNamespace

    import torch

    from benchmarks.lesion_quality import UNIFORM, train_cnn, validation_set
    from sgc_core.calibration import fit_temperature
    from sgc_core.datasets.crops import CropSet

    crops = CropSet.load(args.crops or args.data / "crops.npz")
    train = crops.dataset("train")
    peer = SimpleNamespace(
        width=args.width, cnn_width=None, steps=args.steps, batch=args.batch,
        cnn_lr=args.lr, seed=args.seed, device="cpu",
    )  # fmt: skip
    t0 = time.perf_counter()
    score, _ = train_cnn(train, peer)
    val = validation_set(crops, args.val_max, args.seed)
    temperature = fit_temperature(score(val.images), torch.tensor(val.labels), UNIFORM)
    print(
        f"# CNN: {len(train.labels)} training crops, {args.steps} x {args.batch}, width "
        f"{args.width}, {time.perf_counter() - t0:.0f} s; temperature {temperature:.3f}",
        flush=True,
    )
    return score, temperature


class CnnWindows:
    """The CNN as a window classifier on a view's scan grid."""

    def __init__(self, score, temperature: float, card):
        self.score, self.temperature, self.card = score, temperature, card

    def logp(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        import torch

        from benchmarks.lesion_quality import UNIFORM
        from sgc_core.calibration import log_posterior
        from sgc_core.datasets.crops import cut

        crops = np.stack([cut(image, r, c, self.card.crop) for r, c in centres])
        with torch.inference_mode():
            logits = self.score(torch.from_numpy(crops)[:, None])
        return log_posterior(logits, self.temperature, UNIFORM).numpy()

    def refine(self, image: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The best P(lesion) point of a stride/4 grid within half a stride of ``centre``."""
        s = self.card.stride
        offsets = np.arange(-s // 2, s // 2 + 1, max(1, s // 4))
        grid = centre + np.stack(np.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)
        lp = self.logp(image, grid)
        best = int(np.argmax(lesion_logodds(lp)))
        return grid[best], lp[best]


class SgcWindows:
    """The finder's own coarse pass: its noise plan, its coarse temperature."""

    def __init__(self, scanner):
        self.scanner = scanner

    def logp(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        from sgc_core.denoise_map import window_scores

        sc = self.scanner
        err = sc.errors(image, centres, sc.coarse)
        return np.log(sc.posterior(window_scores(err), sc.card.temperature_coarse))


def lesion_logodds(logp: np.ndarray) -> np.ndarray:
    return np.logaddexp.reduce(logp[:, 1:], axis=1) - logp[:, 0]


def malignant_logodds(logp: np.ndarray, m: int) -> np.ndarray:
    return logp[:, m] - np.logaddexp.reduce(np.delete(logp, m, axis=1), axis=1)


def lesion_rank(centres: np.ndarray, logp: np.ndarray, lesion: tuple, stride: int) -> int | None:
    """1-based rank by P(lesion) of the best window centred within half a stride of the
    lesion (the window a training crop of it resembles); None if the grid has none."""
    near = np.max(np.abs(centres - np.asarray(lesion)), axis=1) <= stride / 2
    if not near.any():
        return None
    score = lesion_logodds(logp)
    return int((score > score[near].max()).sum()) + 1


def picked_windows(centres: np.ndarray, score: np.ndarray, n: int, apart: float) -> list[int]:
    """The ``n`` best windows by ``score``, each at least ``apart`` from those before."""
    out: list[int] = []
    for i in np.argsort(-score):
        if all(np.hypot(*(centres[i] - centres[j])) >= apart for j in out):
            out.append(int(i))
        if len(out) == n:
            break
    return out


def scan_view(name: str, windows, note, card, refine: bool) -> ViewRow | None:
    """One view through one window classifier; None for a view without a breast."""
    import pydicom

    from sgc_core.lesion_scan import window_grid
    from sgc_core.scan_geometry import scan_dataset

    scan = scan_dataset(pydicom.dcmread(note.path), card.spacing_mm)
    if not scan.breast_found or not scan.mask.any():
        return None
    centres = window_grid(scan.mask, card.crop, card.stride, card.min_breast_fraction)
    lp = windows.logp(scan.image, centres)
    picked = picked_windows(centres, lesion_logodds(lp), card.refine_top, card.crop / 2)
    cands = [(centres[i], lp[i]) for i in picked]
    if refine:
        cands = [windows.refine(scan.image, c) for c, _ in cands]
    cand_lp = np.stack([c[1] for c in cands])
    top = cands[int(np.argmax(lesion_logodds(cand_lp)))][0]  # findings go by P(lesion)
    rank = hit = None
    if note.finding != "normal" and note.row is not None:
        lr, lc = scan.geometry.to_scan(np.array([note.row]), np.array([note.col]))
        rank = lesion_rank(centres, lp, (lr[0], lc[0]), card.stride)
    if note.finding == "malignant":
        hit = source_hit(scan, note, top)
    return ViewRow(
        model=name,
        split=note.split,
        finding=note.finding,
        windows=len(centres),
        coarse_logit=float(malignant_logodds(lp, card.malignant).max()),
        top_logit=float(malignant_logodds(cand_lp, card.malignant).max()),
        top_hit=hit,
        lesion_rank=rank,
    )


def source_hit(scan, note, centre: np.ndarray) -> bool:
    """Whether a scan-grid point, mapped back to source pixels, hits the view's lesion."""
    from types import SimpleNamespace

    from sgc_core.lesion_fit import is_hit

    sr, sc = scan.geometry.to_source(np.array([centre[0]]), np.array([centre[1]]))
    view = SimpleNamespace(note=note, spacing_mm=scan.spacing_mm / scan.geometry.step[0])
    return is_hit(view, (float(sr[0]), float(sc[0])))


def summary(rows: list[ViewRow], refine_top: int) -> dict:
    """View AUCs from both view scores, the top finding's hits, the lesion window's rank."""
    from benchmarks.lesion_eval import _auc

    fin = np.array([r.finding for r in rows])
    mal, les = fin == "malignant", fin != "normal"
    out = {"views": len(rows), "malignant": int(mal.sum())}
    for key in ("coarse_logit", "top_logit"):
        s = np.array([getattr(r, key) for r in rows])
        out[f"auc_rest_{key}"] = _auc(mal, s)
        out[f"auc_mal_vs_benign_{key}"] = _auc(mal[les], s[les])
    hits = [r.top_hit for r in rows if r.finding == "malignant"]
    out["top_finding_hits"] = f"{sum(hits)}/{len(hits)}"
    ranks = np.array([r.lesion_rank for r in rows if r.finding == "malignant" and r.lesion_rank])
    if len(ranks):
        out["lesion_window_first"] = float((ranks == 1).mean())
        out[f"lesion_window_top{refine_top}"] = float((ranks <= refine_top).mean())
        out["lesion_window_median_rank"] = float(np.median(ranks))
    out["median_windows"] = float(np.median([r.windows for r in rows]))
    return out


def against_cnn(split: str, by_model: dict[str, dict]) -> list[str]:
    """Each SGC row against the CNN's, measured in the same run: view AUC ratio and
    difference, and the difference in how often the lesion's window is ranked first."""
    cnn = by_model.get("cnn", {})
    out = []
    for name, row in by_model.items():
        a, b = row.get("auc_rest_top_logit"), cnn.get("auc_rest_top_logit")
        if name == "cnn" or a is None or b is None:
            continue
        line = f"{split} {name} vs cnn: view AUC {a:.3f} / {b:.3f} = {a / b:.2f}x ({a - b:+.3f})"
        first, first_cnn = row.get("lesion_window_first"), cnn.get("lesion_window_first")
        if first is not None and first_cnn is not None:
            line += f"; lesion window first {first:.0%} vs {first_cnn:.0%}"
        out.append(line)
    return out


def window_models(args, card) -> dict:
    """name -> (window classifier, whether it re-centres its candidates)."""
    out = {"cnn": (CnnWindows(*train_window_cnn(args), card), True)}
    if args.sgc is not None:
        from sgc_core.lesion_scan import LesionScanner
        from sgc_core.view_model import load_view_model

        finder = load_view_model(args.sgc)
        for change in ["", *args.sgc_set]:
            card = finder.lesion.with_settings(change.split(",")) if change else finder.lesion
            scanner = LesionScanner(finder.scanner.model, finder.scanner.sde, card)
            name = f"sgc {finder.identity.version}" + (f" [{change}]" if change else "")
            out[name] = (SgcWindows(scanner), False)
    return out


def finder_card(args):
    from sgc_core.view_model import load_view_model

    path = args.card or args.sgc or Path(__file__).resolve().parents[1] / "sgc_core/models"
    if path.is_dir() and (path / "sgc-lesion-mammo.json").is_file():
        path = path / "sgc-lesion-mammo"
    return load_view_model(path).lesion


def check_args(args) -> None:
    """Refuse settings the run cannot use in one line, before minutes of training."""
    from sgc_core.lesion_card import LesionCard

    if args.sgc_set and args.sgc is None:
        raise SystemExit("--sgc-set needs --sgc: the finder whose card it changes")
    try:
        LesionCard().with_settings([c for change in args.sgc_set for c in change.split(",")])
    except ValueError as exc:
        raise SystemExit(f"--sgc-set {exc}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    import torch

    from sgc_core.datasets.crops import read_synthetic_annotations

    torch.set_num_threads(args.threads)
    card = finder_card(args)
    notes = read_synthetic_annotations(args.data)
    parts = {
        s: [x for x in notes if x.split == s][:n]
        for s, n in (("val", args.views), ("test", args.test_views))
    }
    if args.held_out is not None:  # as lesion_eval measures a held-out style: its first N views
        parts["held-out"] = read_synthetic_annotations(args.held_out)[: args.held_out_views]
    models = window_models(args, card)
    rows: list[ViewRow] = []
    for split, chosen in ((s, c) for s, c in parts.items() if c):
        got_by_model: dict[str, dict] = {}
        for name, (windows, refine) in models.items():
            t0 = time.perf_counter()
            got = [scan_view(name, windows, x, card, refine) for x in chosen]
            got = [r for r in got if r is not None]
            for r in got:
                r.split = split  # the part it was scanned for (a held-out view has its own split)
            rows += got
            per_view = (time.perf_counter() - t0) / max(1, len(chosen))
            got_by_model[name] = summary(got, card.refine_top)
            print(f"{split} {name}: {json.dumps(got_by_model[name])}", end="")
            print(f"  {per_view:.2f} s/view", flush=True)
        for line in against_cnn(split, got_by_model):
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
