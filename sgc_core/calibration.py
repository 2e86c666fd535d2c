"""From class scores to a calibrated decision: posterior, temperature, operating point, OOD.

log p(y | x) = s_y(x) / T + log pi_y - logsumexp_y'(s_y'(x) / T + log pi_y'), with s_y the
class log-likelihood (or ELBO / denoising score). The temperature T is fitted on a validation
split by minimising the negative log-likelihood (Guo et al. 2017): likelihood ratios of
high-dimensional generative models are far too confident (differences of tens to thousands of
nats), and T rescales them without changing the ranking. Priors enter after the temperature so
they keep their meaning (a different hospital's prevalence can be set without refitting).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar


def log_posterior(
    scores: torch.Tensor, temperature: float, priors: list[float] | torch.Tensor
) -> torch.Tensor:
    """(N, Y) class scores -> (N, Y) log posterior."""
    pri = torch.as_tensor(priors, dtype=torch.float64, device=scores.device)
    if pri.shape[0] != scores.shape[1]:
        raise ValueError(f"{pri.shape[0]} priors for {scores.shape[1]} classes")
    if (pri <= 0).any():
        raise ValueError(f"class priors must be positive, got {pri.tolist()}")
    logits = scores.double() / temperature + torch.log(pri / pri.sum())
    return logits - torch.logsumexp(logits, dim=1, keepdim=True)


def fit_temperature(scores: torch.Tensor, labels: torch.Tensor, priors: list[float]) -> float:
    """The T > 0 minimising validation NLL (bounded 1-D search on log T)."""
    if scores.shape[0] == 0:
        raise ValueError("cannot fit a temperature on an empty validation set")
    lab = labels.long()

    def nll(log_t: float) -> float:
        lp = log_posterior(scores, math.exp(log_t), priors)
        return float(-lp[torch.arange(len(lab)), lab].mean())

    spread = float((scores.max(1).values - scores.min(1).values).abs().median()) + 1e-8
    centre = math.log(spread)
    res = minimize_scalar(
        nll, bounds=(centre - 12.0, centre + 12.0), method="bounded", options={"xatol": 1e-4}
    )
    return float(math.exp(res.x))


def threshold_for_sensitivity(
    p_positive: np.ndarray, is_positive: np.ndarray, target: float
) -> float:
    """The largest threshold on P(positive) whose sensitivity on these data is >= ``target``."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    pos = np.sort(np.asarray(p_positive)[np.asarray(is_positive, dtype=bool)])
    if pos.size == 0:
        raise ValueError("no positive cases in the validation split: cannot set an operating point")
    idx = int(math.floor((1.0 - target) * pos.size + 1e-9))
    return float(pos[min(idx, pos.size - 1)])


def ood_threshold(in_distribution_scores: np.ndarray, fpr: float) -> float:
    """Threshold flagging a fraction ``fpr`` of in-distribution validation images (higher = OOD)."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"OOD false-positive rate must be in (0, 1), got {fpr}")
    scores = np.asarray(in_distribution_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("cannot set an OOD threshold on an empty validation set")
    return float(np.quantile(scores, 1.0 - fpr, method="higher"))
