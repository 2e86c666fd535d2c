"""Find lesions in one view: tile the breast, score every window, refine the best, locate.

Coarse to fine, as diffusion classifiers prune: every window of the breast is scored with a
few shared (t, eps) pairs (``k_coarse``); only the ``refine_top`` most lesion-like windows, each
re-centred on the peak of its evidence, are scored again with many (``k_fine``). A window's class
scores are the class-conditional denoising scores of :mod:`sgc_core.denoise_map`; the per-pixel
differences between classes form the evidence map. Locations are mapped back to the source
image through the scan's :class:`~sgc_core.scan_geometry.ScanGeometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from sgc_core.batching import DEFAULT_MEMORY_MB, forward_rows, model_width, retain_freed_memory
from sgc_core.calibration import log_posterior
from sgc_core.datasets.crops import cut
from sgc_core.denoise_map import NoisePlan, class_errors, evidence, noise_plan, window_scores
from sgc_core.lesion_card import LesionCard, Platt
from sgc_core.lesion_locate import blob_radius, fine_location
from sgc_core.results import EvidenceMap, Finding, ViewResult
from sgc_core.scaling import to_model_space
from sgc_core.scan_geometry import ScanImage
from sgc_core.sde import SDE

#: The evidence map is stored at this fraction of the scan grid's resolution (1.6 mm / px).
EVIDENCE_DOWNSAMPLE = 4

#: A window's outermost pixels (scan px) where a fine-pass peak is not looked for.
LOCATE_MARGIN = 4


@dataclass(frozen=True)
class Candidate:
    """A refined window: its centre on the scan grid, calibrated posterior and raw scores."""

    row: float
    col: float
    posterior: np.ndarray  # (Y,) calibrated P(class) of the region
    radius: float  # scan pixels
    malignant_logit: float


def platt(p: Platt, feature: float) -> float:
    return 1.0 / (1.0 + math.exp(-(p.a * feature + p.b)))


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def distinct(cands: list[Candidate], apart: float) -> list[Candidate]:
    """The candidates in order, without any that lies within ``apart`` of one kept before it.

    Why: windows half a window apart can re-centre on the same evidence peak; a reader (and
    FROC) would see one lesion marked two or three times, each a false finding but one."""
    kept: list[Candidate] = []
    for cand in cands:
        if all(math.hypot(cand.row - k.row, cand.col - k.col) >= apart for k in kept):
            kept.append(cand)
    return kept


def nipple_distance_mm(scan: ScanImage, col: float) -> float:
    """How far behind the nipple a scan column lies along the chest wall-nipple axis (mm).

    Why along the axis: a lesion keeps its depth behind the nipple in the CC and the MLO (the
    MLO turns the breast about that axis), so this is the number that matches a finding with
    its partner in the other projection. The nipple is the breast's deepest scan column
    (column 0 is the chest wall); 0 for a point at or beyond it.
    """
    cols = np.flatnonzero(scan.mask.any(axis=0))
    deepest = float(cols.max()) if len(cols) else 0.0
    return max(deepest - float(col), 0.0) * scan.spacing_mm


def window_grid(mask: np.ndarray, crop: int, stride: int, min_fraction: float) -> np.ndarray:
    """(N, 2) window centres on a ``stride`` grid whose ``crop`` window holds at least
    ``min_fraction`` breast; one window at the breast's centre of mass if none does. A
    function of the mask alone, so any window classifier scans the finder's windows."""
    h, w = mask.shape
    rows = np.arange(stride // 2, max(h, stride // 2 + 1), stride)
    cols = np.arange(stride // 2, max(w, stride // 2 + 1), stride)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    cover = ndimage.uniform_filter(mask.astype(np.float32), size=crop, mode="constant")
    keep = cover[np.minimum(grid[:, 0], h - 1), np.minimum(grid[:, 1], w - 1)]
    grid = grid[keep >= min_fraction]
    if len(grid) == 0 and mask.any():  # a breast smaller than one window
        grid = np.round(ndimage.center_of_mass(mask)).astype(int)[None]
    return grid.astype(np.float64)


class LesionScanner:
    """A class-conditional score network trained on crops, and its lesion card."""

    def __init__(
        self,
        model: nn.Module,
        sde: SDE,
        card: LesionCard,
        device: str = "cpu",
        memory_mb: float = DEFAULT_MEMORY_MB,
    ):
        self.model = model.to(device).eval().requires_grad_(False)
        self.sde = sde
        self.card = card
        self.device = torch.device(device)
        shape = (1, card.crop, card.crop)
        self.coarse = noise_plan(card.k_coarse, shape, card.t_range, card.seed)
        self.fine = noise_plan(card.k_fine, shape, card.t_range, card.seed + 1)
        self.middle = noise_plan(card.k_middle, shape, card.t_range, card.seed + 2)
        # Rows of one forward call: the memory budget's, at most the card's max_batch.
        self.rows = forward_rows(model_width(self.model), card.crop, memory_mb, card.max_batch)
        retain_freed_memory()

    # -- windows ------------------------------------------------------------------------
    def window_centres(self, scan: ScanImage) -> np.ndarray:
        """(N, 2) centres on a ``stride`` grid whose window holds enough breast."""
        c = self.card
        return window_grid(scan.mask, c.crop, c.stride, c.min_breast_fraction)

    def errors(self, image: np.ndarray, centres: np.ndarray, plan: NoisePlan) -> torch.Tensor:
        crops = np.stack([cut(image, r, c, self.card.crop) for r, c in centres])
        x = to_model_space(torch.from_numpy(crops)[:, None], 256, dequantize=False)
        return class_errors(
            self.model,
            self.sde,
            x.to(self.device),
            len(self.card.classes),
            plan,
            self.rows,
        ).cpu()

    def posterior(self, scores: torch.Tensor, temperature: float) -> np.ndarray:
        return log_posterior(scores, temperature, list(self.card.priors)).exp().numpy()

    # -- the pass ---------------------------------------------------------------------------
    def scan(self, scan: ScanImage) -> ViewResult:
        """The view's result; a view without a breast gets a defined, unscored result."""
        if not scan.breast_found or not scan.mask.any():
            return self._unscored(scan, ("no breast found in the image",))
        centres = self.window_centres(scan)
        err = self.errors(scan.image, centres, self.coarse)
        ranked, err = self._rank(scan, centres, err)
        emap = self._evidence_map(scan, centres, err)
        cands = self._refine(scan, ranked, emap)
        # Typicality: the best class's mean per-pixel error, median over the windows.
        ood_score = float(err.min(1).values.mean(dim=(1, 2)).median())
        return self._result(scan, cands, emap, ood_score, len(centres))

    def _evidence_map(self, scan: ScanImage, centres: np.ndarray, err: torch.Tensor) -> np.ndarray:
        """Overlap-averaged per-pixel malignant-vs-normal evidence on the scan grid."""
        ev = evidence(err, self.card.malignant, 0).numpy()
        acc = np.zeros(scan.image.shape, dtype=np.float64)
        cnt = np.zeros(scan.image.shape, dtype=np.float64)
        half = self.card.crop // 2
        for (r, c), e in zip(centres.astype(int), ev, strict=True):
            r0, c0 = r - half, c - half
            rs, cs = max(r0, 0), max(c0, 0)
            re, ce = min(r0 + self.card.crop, acc.shape[0]), min(c0 + self.card.crop, acc.shape[1])
            acc[rs:re, cs:ce] += e[rs - r0 : re - r0, cs - c0 : ce - c0]
            cnt[rs:re, cs:ce] += 1
        out = np.where(cnt > 0, acc / np.maximum(cnt, 1), 0.0) * scan.mask
        return ndimage.gaussian_filter(out, 2.0)

    def _rank(
        self, scan: ScanImage, centres: np.ndarray, err: torch.Tensor
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Window centres, least normal first, and the windows' errors; with a middle stage,
        only the windows it rescored, whose errors become the mean over all their pairs."""
        card = self.card
        post = self.posterior(window_scores(err), card.temperature_coarse)
        order = np.argsort(post[:, 0])
        if not card.middle_windows or len(centres) <= card.refine_top:
            return centres[order], err
        keep = order[: card.middle_windows]
        rows = torch.from_numpy(keep)
        more = self.errors(scan.image, centres[keep], self.middle)
        err = err.clone()  # not in place: the coarse errors are an inference-mode tensor
        err[rows] = (card.k_coarse * err[rows] + card.k_middle * more) / (
            card.k_coarse + card.k_middle
        )
        post = self.posterior(window_scores(err[rows]), card.temperature_coarse)
        return centres[keep[np.argsort(post[:, 0])]], err

    def _refine(self, scan: ScanImage, ranked: np.ndarray, emap: np.ndarray) -> list[Candidate]:
        """Re-centre the best windows on their evidence peak and score them finely."""
        picked: list[np.ndarray] = []
        for point in ranked:
            if all(np.hypot(*(point - p)) >= self.card.crop / 2 for p in picked):
                picked.append(point)
            if len(picked) == self.card.refine_top:
                break
        peaks = np.array([self._peak(emap, p) for p in picked])
        err = self.errors(scan.image, peaks, self.fine)
        fine = self.posterior(window_scores(err), self.card.temperature_fine)
        m = self.card.malignant
        out = []
        for centre, e, p in zip(peaks, err, fine, strict=True):
            r, c, radius = self._locate(scan, emap, e, p, centre)
            out.append(Candidate(r, c, p, radius, logit(float(p[m]))))
        return distinct(sorted(out, key=lambda cand: -cand.malignant_logit), self.card.stride / 2)

    def _peak(self, emap: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """The evidence maximum within a stride of a window centre (the window if flat)."""
        s = self.card.stride // 2
        r, c = int(centre[0]), int(centre[1])
        r0, c0 = max(r - s, 0), max(c - s, 0)
        patch = emap[r0 : r + s + 1, c0 : c + s + 1]
        if patch.size == 0 or patch.max() <= 0:
            return centre.astype(np.float64)
        i, j = np.unravel_index(int(np.argmax(patch)), patch.shape)
        return np.array([r0 + i, c0 + j], dtype=np.float64)

    def _locate(
        self, scan: ScanImage, emap: np.ndarray, err: torch.Tensor, post: np.ndarray, centre
    ) -> tuple[float, float, float]:
        """(row, col, radius) of a refined candidate on the scan grid: on the coarse map, or,
        with ``locate_sigma`` set, on the peak of the fine pass's evidence for its most likely
        lesion class in its own window (``k_fine`` pairs instead of one)."""
        r, c = float(centre[0]), float(centre[1])
        half = self.card.crop // 2
        if self.card.locate_sigma <= 0:
            return r, c, blob_radius(emap, r, c, half)
        lesion_class = 1 + int(np.argmax(post[1:]))
        ev = evidence(err[None], lesion_class, 0)[0].numpy()
        breast = cut(scan.mask.astype(np.float32), r, c, self.card.crop)
        card = self.card
        fine = fine_location(
            ev, breast, (r, c), card.locate_sigma, LOCATE_MARGIN, card.locate_reach
        )
        return fine if fine is not None else (r, c, blob_radius(emap, r, c, half))

    # -- the result ---------------------------------------------------------------------------
    def _result(
        self, scan: ScanImage, cands: list[Candidate], emap: np.ndarray, ood_score: float, n: int
    ) -> ViewResult:
        card = self.card
        top = max((c.malignant_logit for c in cands), default=-20.0)
        p = platt(card.view, top)
        findings = tuple(
            self._finding(scan, c)
            for c in sorted(cands, key=lambda c: -(1 - c.posterior[0]))
            if 1.0 - c.posterior[0] >= card.finding_threshold
        )[: card.max_findings]
        reasons = list(scan.ood_reasons)
        if card.ood_low is not None and ood_score < card.ood_low:
            reasons.append(
                f"denoising error {ood_score:.4g} below the model's band ({card.ood_low:.4g})"
            )
        if card.ood_high is not None and ood_score > card.ood_high:
            reasons.append(
                f"denoising error {ood_score:.4g} above the model's band ({card.ood_high:.4g})"
            )
        return ViewResult(
            p_malignant=p,
            predicted_class="malignant" if p >= card.operating_point else "not malignant",
            findings=findings,
            evidence=self._stored_map(scan, emap),
            ood=bool(reasons),
            ood_reasons=tuple(reasons),
            ood_score=ood_score,
            laterality=scan.laterality,
            view=scan.view,
            breast_box=scan.geometry.box,
            method=f"lesion-scan-k{card.k_coarse}/{card.k_fine}",
            windows=n,
            extra={"top_malignant_logit": top},
        )

    def _finding(self, scan: ScanImage, cand: Candidate) -> Finding:
        geo = scan.geometry
        m = self.card.malignant
        lesion = cand.posterior[1:]
        label = self.card.classes[1 + int(np.argmax(lesion))]
        angles = np.linspace(0, 2 * math.pi, 17)
        rr, cc = geo.to_source(
            cand.row + cand.radius * np.sin(angles), cand.col + cand.radius * np.cos(angles)
        )
        sr, sc = geo.to_source(np.array([cand.row]), np.array([cand.col]))
        rad = geo.length_to_source(cand.radius)
        rows, cols = geo.source_shape
        box = (
            int(max(0, math.floor(sr[0] - rad))),
            int(max(0, math.floor(sc[0] - rad))),
            int(min(rows, math.ceil(sr[0] + rad + 1))),
            int(min(cols, math.ceil(sc[0] + rad + 1))),
        )
        outline = tuple(
            (float(np.clip(r, 0, rows - 1)), float(np.clip(c, 0, cols - 1)))
            for r, c in zip(rr, cc, strict=True)
        )
        return Finding(
            label=label,
            probability=float(cand.posterior[self.card.classes.index(label)]),
            p_malignant=float(cand.posterior[m]),
            p_lesion=float(1.0 - cand.posterior[0]),
            centre=(float(sr[0]), float(sc[0])),
            radius=rad,
            box=box,
            outline=outline,
            nipple_distance_mm=nipple_distance_mm(scan, cand.col),
        )

    def _stored_map(self, scan: ScanImage, emap: np.ndarray) -> EvidenceMap:
        d = EVIDENCE_DOWNSAMPLE
        small = emap[d // 2 :: d, d // 2 :: d].astype(np.float32)
        geo = scan.geometry
        r0, c0 = geo.to_source(np.array([d // 2]), np.array([d // 2]))
        step = (geo.step[0] * d, geo.step[1] * d)
        return EvidenceMap(small, (float(r0[0]), float(c0[0])), step, geo.flipped)

    def _unscored(self, scan: ScanImage, why: tuple[str, ...]) -> ViewResult:
        reasons = tuple(dict.fromkeys((*scan.ood_reasons, *why)))
        return ViewResult(
            p_malignant=None,
            predicted_class="not scored",
            findings=(),
            evidence=None,
            ood=True,
            ood_reasons=reasons,
            ood_score=float("nan"),
            laterality=scan.laterality,
            view=scan.view,
            breast_box=scan.geometry.box,
            method=f"lesion-scan-k{self.card.k_coarse}/{self.card.k_fine}",
        )
