"""The loaded classifier the worker uses: ``load_classifier(path).classify(images)``.

The model is loaded once (weights verified against the card's sha256); ``classify`` validates
its input, maps [0, 1] pixels to the model's dequantized [-1, 1] space, estimates the class
log-likelihoods (ELBO by default, or the exact probability-flow ODE), and turns them into a
calibrated posterior, a decision at the card's operating point and an OOD flag.

Determinism: the estimator's random numbers (dequantization noise, (t, eps) pairs, probes) come
from a generator seeded from the card for every call and are the same for every image of a
batch, so an image gets the same answer whatever batch it arrives in.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from sgc_core.batching import DEFAULT_MEMORY_MB, forward_rows, model_width, retain_freed_memory
from sgc_core.calibration import log_posterior
from sgc_core.checkpoint import load_model
from sgc_core.elbo import elbo_scores
from sgc_core.likelihood_ode import ode_log_likelihood
from sgc_core.model_card import ModelCard
from sgc_core.scaling import bits_per_dim
from sgc_core.sde import sde_from_dict


@dataclass(frozen=True)
class ClassResult:
    """One image's result. ``log_likelihoods`` are nats in the model's [-1, 1] space (ELBO or
    exact); ``bits_per_dim`` is of the discretised image under the class-marginal p(x)."""

    predicted_class: str
    probabilities: dict[str, float]
    log_likelihoods: dict[str, float]
    bits_per_dim: float
    ood: bool
    ood_score: float
    method: str
    ood_reason: str | None = None


@dataclass(frozen=True)
class EstimatorConfig:
    """How log p(x | y) is estimated. ``method``: ``elbo`` (fast, default) or ``ode`` (exact)."""

    method: str = "elbo"
    k: int = 16
    t_sampling: str = "stratified"
    weighting: str = "uniform"
    ode_method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    ode_steps: int = 100
    n_probes: int = 1
    probe: str = "rademacher"
    eps: float = 1e-5
    seed: int = 0
    max_batch: int = 256
    extra: dict = field(default_factory=dict)

    def label(self) -> str:
        if self.method == "elbo":
            return f"elbo-{self.weighting}-{self.t_sampling}-k{self.k}"
        return f"ode-{self.ode_method}-{self.probe}{self.n_probes}"

    @classmethod
    def from_dict(cls, d: dict | None) -> EstimatorConfig:
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown estimator settings {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.method not in ("elbo", "ode"):
            raise ValueError(f"unknown estimator method {cfg.method!r}; expected 'elbo' or 'ode'")
        if cfg.k < 1:
            raise ValueError(f"K must be >= 1, got {cfg.k}")
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


class Classifier:
    """A score network plus its card; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        card: dict | ModelCard,
        device: str = "cpu",
        estimator: EstimatorConfig | None = None,
        memory_mb: float = DEFAULT_MEMORY_MB,
    ) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.card = card if isinstance(card, ModelCard) else ModelCard.from_dict(card)
        self.device = torch.device(device)
        self.sde = sde_from_dict(self.card.data["sde"])
        self.classes: list[str] = list(self.card.classes)
        self.estimator = estimator or EstimatorConfig.from_dict(self.card.data.get("estimator"))
        self.levels = self.card.quantization_levels
        self._warned = False
        # Rows (image x class x K) of one forward call: the memory budget's, at most the
        # estimator's max_batch (sgc_core/batching.py); chunking never changes a result.
        self.rows = forward_rows(
            model_width(self.model), self.card.image_size, memory_mb, self.estimator.max_batch
        )
        retain_freed_memory()

    # -- input checks -------------------------------------------------------------------
    def validate(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"expected a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}"
            )
        c, s = self.card.channels, self.card.image_size
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, {c}, {s}, {s}), got {tuple(x.shape)}")
        if x.shape[1] != c:
            raise ValueError(f"model {self.card.name} expects {c} channel(s), got {x.shape[1]}")
        if tuple(x.shape[2:]) != (s, s):
            raise ValueError(
                f"model {self.card.name} expects {s}x{s} images, got {x.shape[2]}x{x.shape[3]}"
            )
        if not torch.is_floating_point(x):
            x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or infinite pixel values")
        lo, hi = self.card.input_range
        tol = 1e-3 * (hi - lo)
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - tol or xmax > hi + tol:
            raise ValueError(
                f"pixel values must lie in [{lo:g}, {hi:g}] (the model's preprocessed scaling), "
                f"got range [{xmin:.4g}, {xmax:.4g}]"
            )
        return ((x.float() - lo) / (hi - lo)).clamp(0.0, 1.0)

    # -- estimates ----------------------------------------------------------------------
    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.estimator.seed))

    def estimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, log_likelihoods), both (B, Y), for images returned by ``validate`` ([0, 1])."""
        gen = self._generator()
        # One dequantization draw shared by all images (batch-independent results).
        u = torch.rand((1, *x.shape[1:]), generator=gen)
        k = torch.clamp(torch.round(x.cpu() * (self.levels - 1)), 0, self.levels - 1)
        y = (2.0 * (k + u) / self.levels - 1.0).to(self.device)
        est = self.estimator
        if est.method == "elbo":
            r = elbo_scores(
                self.model,
                self.sde,
                y,
                len(self.classes),
                k=est.k,
                t_sampling=est.t_sampling,
                weighting=est.weighting,
                eps=est.eps,
                generator=gen,
                max_batch=self.rows,
                same_noise_for_batch=True,
            )
            return r.score.cpu(), r.elbo.cpu()
        r2 = ode_log_likelihood(
            self.model,
            self.sde,
            y,
            len(self.classes),
            method=est.ode_method,
            rtol=est.rtol,
            atol=est.atol,
            n_steps=est.ode_steps,
            n_probes=est.n_probes,
            probe=est.probe,
            eps=est.eps,
            generator=gen,
            same_probes_for_batch=True,
        )
        logp = r2.logp.double().cpu()
        return logp, logp

    def priors(self) -> list[float]:
        return self.card.priors()

    def temperature(self) -> float:
        """The card's temperature, if it was fitted for this estimator; otherwise 1 (uncalibrated).

        Scores of different estimators live on different scales (the uniform denoising score is
        not in nats), so a temperature fitted for one must not be applied to another."""
        cal = self.card.calibration
        fitted_for = cal.method
        if fitted_for is not None and fitted_for != self.estimator.label():
            if not self._warned:
                warnings.warn(
                    f"model {self.card.name} was calibrated for {fitted_for}, not "
                    f"{self.estimator.label()}: probabilities are uncalibrated (temperature 1)",
                    stacklevel=2,
                )
                self._warned = True
            return 1.0
        return cal.temperature

    def posterior(self, scores: torch.Tensor) -> torch.Tensor:
        return log_posterior(scores, self.temperature(), self.priors()).exp()

    def ood_scores(self, loglik: torch.Tensor) -> torch.Tensor:
        """Bits/dim of p(x) = sum_y p(x | y) pi_y (higher = less like the training data)."""
        pri = torch.as_tensor(self.priors(), dtype=torch.float64)
        log_px = torch.logsumexp(loglik.double() + torch.log(pri / pri.sum()), dim=1)
        d = self.card.channels * self.card.image_size**2
        return bits_per_dim(log_px, d, self.levels)

    def ood_flags(self, bpd: torch.Tensor) -> torch.Tensor:
        """True where an image is out of distribution: bits/dim above the card's ``threshold``
        (or NaN), or below its ``threshold_low`` when the card has one. The lower side is a
        typicality test (Nalisnick et al. 2019): likelihood models give blank or very smooth
        images a *higher* density than the data they were trained on."""
        band = self.card.ood
        bpd = torch.as_tensor(bpd, dtype=torch.float64)
        flags = torch.zeros(bpd.shape, dtype=torch.bool)
        if band.high is not None:
            flags |= torch.isnan(bpd) | (bpd > band.high)
        if band.low is not None:
            flags |= bpd < band.low
        return flags

    def decide(self, probs: torch.Tensor) -> list[str]:
        """The card's one decision rule (:meth:`ModelCard.decide`) for each row."""
        return [self.card.decide(row.tolist()) for row in probs]

    def ood_reason(self, bpd: float) -> str | None:
        """The bits/dim rule that flagged an image, in words (None if it was not flagged)."""
        if not bool(self.ood_flags(torch.tensor([bpd]))[0]):
            return None
        low, high = self.card.ood.low, self.card.ood.high
        if low is not None and bpd < low:
            return f"{bpd:.3f} bits/dim is below the model's lower threshold {low:.3f}"
        return f"{bpd:.3f} bits/dim is above the model's threshold {high or float('nan'):.3f}"

    def classify(
        self, x: torch.Tensor, input_ood: Sequence[Sequence[str]] | None = None
    ) -> list[ClassResult]:
        """Classify a batch; ``input_ood`` gives, per image, the reasons the input checks found
        (``Preprocessed.ood_reasons``): an image with any is flagged whatever its bits/dim.

        The ELBO runs under ``torch.inference_mode`` (no autograd bookkeeping at all); the ODE
        needs autograd for its divergence, so it runs under ``no_grad`` as before."""
        mode = torch.inference_mode if self.estimator.method == "elbo" else torch.no_grad
        with mode():
            return self._classify(x, input_ood)

    def _classify(
        self, x: torch.Tensor, input_ood: Sequence[Sequence[str]] | None
    ) -> list[ClassResult]:
        x = self.validate(x)
        if input_ood is not None and len(input_ood) != x.shape[0]:
            raise ValueError(f"input_ood has {len(input_ood)} entries for {x.shape[0]} images")
        results: list[ClassResult] = []
        per_image = len(self.classes) * (self.estimator.k if self.estimator.method == "elbo" else 1)
        chunk = max(1, self.rows // per_image)
        for s in range(0, x.shape[0], chunk):
            scores, loglik = self.estimate(x[s : s + chunk])
            probs = self.posterior(scores)
            bpd = self.ood_scores(loglik)
            for i, name in enumerate(self.decide(probs)):
                score = float(bpd[i])
                reasons = list(input_ood[s + i]) if input_ood is not None else []
                by_density = self.ood_reason(score)
                if by_density is not None:
                    reasons.append(by_density)
                results.append(
                    ClassResult(
                        predicted_class=name,
                        probabilities={c: float(probs[i, j]) for j, c in enumerate(self.classes)},
                        log_likelihoods={
                            c: float(loglik[i, j]) for j, c in enumerate(self.classes)
                        },
                        bits_per_dim=score,
                        ood=bool(reasons),
                        ood_score=score,
                        method=self.estimator.label(),
                        ood_reason="; ".join(reasons) or None,
                    )
                )
        return results


def load_classifier(
    path: str | Path,
    device: str = "cpu",
    *,
    estimator: EstimatorConfig | dict | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> Classifier:
    """Load ``<name>.safetensors`` + ``<name>.json`` (sha256-verified) into a ``Classifier``.

    ``estimator`` overrides the card's estimator settings (e.g. ``{"method": "ode"}``).
    """
    model, card = load_model(path, device)
    if isinstance(estimator, dict):
        base = dict(card.get("estimator") or {})
        base.update(estimator)
        estimator = EstimatorConfig.from_dict(base)
    return Classifier(model, card, device, estimator, memory_mb)
