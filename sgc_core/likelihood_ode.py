"""Exact log-likelihood by the probability-flow ODE, solved in torch on the model's device.

log p_0(x | y) = log pi(x_T) + int_eps^T div f~(x_t, t, y) dt, with the probability-flow drift
f~(x, t, y) = a(t) x - 1/2 g(t)^2 s(x, t, y) (Song et al. 2021, ICLR, Sec. 4.3 / App. D.2).
The divergence is estimated by Hutchinson's trace estimator, v^T (d f~/dx) v, from one forward
and one vector-Jacobian product per probe (the drift and the divergence share the forward).

Why one solve for all images and all classes: a batch of B images x Y classes is one state of
B*Y rows, so each solver stage is a single network call; the step size is controlled by the
worst row (a per-row RMS error norm, max over rows), which keeps every row at least as accurate
as its own scipy solve would be. The label enters the drift (the public reference code drops it).
Probes are drawn per image and shared by its classes, so class differences are not swamped by
probe noise. Everything stays on the device: no numpy round trip per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sgc_core.sde import SDE, prior_logp

# Dormand-Prince 5(4) tableau (Dormand & Prince 1980).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = _A[6] + (0.0,)
# b5 - b4: the embedded error estimate's weights.
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


@dataclass(frozen=True)
class OdeEstimate:
    """``logp``: (B, Y) log p(x | y) in nats; ``nfe``: drift evaluations of the whole solve."""

    logp: torch.Tensor
    nfe: int
    steps: int


def _error_norm(
    err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float
) -> float:
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return float((err / scale).pow(2).mean(1).sqrt().max())


def solve_dopri5(
    f: Callable[[float, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    t1: float,
    rtol: float,
    atol: float,
    max_steps: int = 100_000,
) -> tuple[torch.Tensor, int, int]:
    """Adaptive Dormand-Prince 5(4) with FSAL and the standard step controller (Hairer I.4).

    ``y0`` has rows (independent problems) x columns; returns (y(t1), nfe, accepted steps).
    """
    t = t0
    y = y0
    k1 = f(t, y)
    nfe = 1
    # Initial step (Hairer, Norsett & Wanner, Sec. II.4).
    scale = atol + rtol * y.abs()
    d0 = float((y / scale).pow(2).mean(1).sqrt().max())
    d1 = float((k1 / scale).pow(2).mean(1).sqrt().max())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, t1 - t0)
    k_probe = f(t + h0, y + h0 * k1)
    nfe += 1
    d2 = float(((k_probe - k1) / scale).pow(2).mean(1).sqrt().max()) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
    h = min(100 * h0, h1, t1 - t0)
    steps = 0
    while t < t1:
        if steps >= max_steps:
            raise RuntimeError(f"ODE solver exceeded {max_steps} steps at t={t:.3g}")
        h = min(h, t1 - t)
        ks = [k1]
        for i in range(1, 7):
            yi = y + h * sum(a * kk for a, kk in zip(_A[i], ks, strict=False) if a != 0.0)
            ks.append(f(t + _C[i] * h, yi))
        nfe += 6
        y_new = y + h * sum(b * kk for b, kk in zip(_B5, ks, strict=True) if b != 0.0)
        err = h * sum(e * kk for e, kk in zip(_E, ks, strict=True) if e != 0.0)
        norm = _error_norm(err, y, y_new, rtol, atol)
        if norm <= 1.0:
            t = t + h
            y = y_new
            k1 = ks[6]  # first-same-as-last
            steps += 1
            factor = 10.0 if norm == 0 else min(10.0, max(0.2, 0.9 * norm**-0.2))
        else:
            factor = max(0.2, 0.9 * norm**-0.2)
        h = h * factor
        if h < 1e-12:
            raise RuntimeError(f"ODE step size underflow at t={t:.3g}")
    return y, nfe, steps


def solve_fixed(
    f: Callable[[float, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    t1: float,
    method: str,
    n_steps: int,
) -> tuple[torch.Tensor, int, int]:
    """Fixed-step Euler, Heun (RK2) or classical RK4 on a uniform grid."""
    h = (t1 - t0) / n_steps
    y = y0
    nfe = 0
    for i in range(n_steps):
        t = t0 + i * h
        if method == "euler":
            y = y + h * f(t, y)
            nfe += 1
        elif method == "heun":
            k1 = f(t, y)
            k2 = f(t + h, y + h * k1)
            y = y + 0.5 * h * (k1 + k2)
            nfe += 2
        elif method == "rk4":
            k1 = f(t, y)
            k2 = f(t + h / 2, y + h / 2 * k1)
            k3 = f(t + h / 2, y + h / 2 * k2)
            k4 = f(t + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            nfe += 4
        else:
            raise ValueError(f"unknown ODE method {method!r}; expected dopri5, euler, heun or rk4")
    return y, nfe, n_steps


def draw_probes(
    shape: tuple[int, ...], n: int, kind: str, generator: torch.Generator | None, dtype: torch.dtype
) -> torch.Tensor:
    """``n`` Hutchinson probes of ``shape``: Rademacher (+-1) or standard Gaussian."""
    if kind == "rademacher":
        return torch.randint(0, 2, (n, *shape), generator=generator).to(dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn((n, *shape), generator=generator, dtype=dtype)
    raise ValueError(f"unknown probe kind {kind!r}; expected 'rademacher' or 'gaussian'")


def ode_log_likelihood(
    model: nn.Module,
    sde: SDE,
    x: torch.Tensor,
    num_classes: int,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    n_probes: int = 1,
    probe: str = "rademacher",
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    same_probes_for_batch: bool = False,
) -> OdeEstimate:
    """log p(x | y) for every image of ``x`` (model space) and every class, in one ODE solve."""
    b = x.shape[0]
    shape = x.shape[1:]
    dev, dt = x.device, x.dtype
    n = b * num_classes
    labels = torch.arange(num_classes, device=dev).repeat(b)
    probes = draw_probes(
        (1 if same_probes_for_batch else b, *shape), n_probes, probe, generator, dt
    )
    probes = probes.expand(n_probes, b, *shape).to(dev)
    probes = probes.repeat_interleave(num_classes, dim=1)  # shared by the classes of an image
    d = x[0].numel()

    def drift_and_div(t: float, state: torch.Tensor) -> torch.Tensor:
        tt = torch.full((n,), t, device=dev, dtype=dt)
        with torch.enable_grad():
            xx = state[:, :d].reshape(n, *shape).detach().requires_grad_(True)
            shp = (-1, 1, 1, 1)
            drift = sde.drift_coeff(tt).view(shp) * xx - 0.5 * sde.g2(tt).view(shp) * model(
                xx, tt, labels
            )
            div = torch.zeros(n, device=dev, dtype=dt)
            for i in range(n_probes):
                (vjp,) = torch.autograd.grad(drift, xx, probes[i], retain_graph=i < n_probes - 1)
                div = div + (vjp * probes[i]).reshape(n, -1).sum(1)
        return torch.cat([drift.detach().reshape(n, d), (div / n_probes)[:, None]], dim=1)

    start = torch.cat(
        [
            x.repeat_interleave(num_classes, dim=0).reshape(n, d),
            torch.zeros(n, 1, device=dev, dtype=dt),
        ],
        dim=1,
    )
    if method == "dopri5":
        end, nfe, steps = solve_dopri5(drift_and_div, start, eps, 1.0, rtol, atol)
    else:
        end, nfe, steps = solve_fixed(drift_and_div, start, eps, 1.0, method, n_steps)
    x_end = end[:, :d].reshape(n, *shape)
    logp = prior_logp(sde, x_end) + end[:, d]
    return OdeEstimate(logp=logp.reshape(b, num_classes), nfe=nfe, steps=steps)
