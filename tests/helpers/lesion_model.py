"""A lesion-finder model file for tests: a real lesion card over an untrained network.

The weights are random but class-dependent (a fresh network's class embeddings start equal,
which would make the evidence map flat), so the finder takes its full path: windows, findings
in source coordinates, an evidence map with positive places. Its numbers mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sgc_core.checkpoint import save_model
from sgc_core.lesion_card import LesionCard
from sgc_core.sde import VPSDE
from sgc_core.unet import architecture_spec, build_score_model


def write_lesion_model(folder: Path, seed: int = 0, view_feature: str = "alone") -> Path:
    """Write the model into ``folder``; return its .safetensors path (``view_feature``
    "pair": a card that reads each view with the other projection of its breast)."""
    torch.manual_seed(seed)
    arch = architecture_spec("default", 3, 1, 64, 8)
    model = build_score_model(arch, VPSDE())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    card = {
        "name": "sgc-lesion-test",
        "version": "0",
        "classes": ["normal", "benign", "malignant"],
        "positive_class": "malignant",
        "image_size": 64,
        "channels": 1,
        "sde": VPSDE().to_dict(),
        "architecture": arch,
        "lesion": LesionCard(k_fine=2, finding_threshold=0.0, view_feature=view_feature).to_dict(),
    }
    out = folder / "lesion"
    save_model(out, model, card)
    return out.with_suffix(".safetensors")
