"""Model files: weights as safetensors plus a JSON model card next to them.

Why a card: the worker must rebuild and trust a model without the training code's state. The
card names the architecture, SDE, classes, image size, preprocessing, calibration, operating
point and OOD threshold, and carries the sha256 of the weights file, so a truncated copy or a
card paired with the wrong weights fails loudly at load time instead of classifying silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sgc_config.atomic import replacing, write_atomic
from sgc_core.unet import build_score_model

CARD_FORMAT = "sgc-model-card/1"
REQUIRED_KEYS = (
    "name",
    "version",
    "sha256",
    "classes",
    "image_size",
    "channels",
    "sde",
    "architecture",
)


class ModelFileError(ValueError):
    """A model file or card is missing, corrupt, or does not match."""


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``foo``, ``foo.safetensors`` or ``foo.json`` -> (foo.safetensors, foo.json)."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(path: str | Path, model: nn.Module, card: dict) -> tuple[Path, Path]:
    """Write weights and card; fills in ``sha256`` and ``format``. Returns both paths."""
    weights, card_path = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    # Durable and atomic (sgc_config/atomic.py): a crash leaves the old or the new file.
    with replacing(weights) as tmp:
        save_file(state, str(tmp), metadata={"name": str(card.get("name", ""))})
    card = dict(card, sha256=sha256_of(weights), format=CARD_FORMAT)
    write_atomic(card_path, json.dumps(card, indent=2, sort_keys=True))
    return weights, card_path


def read_card(path: str | Path) -> dict:
    """Read and check a model card (no weights loaded)."""
    _, card_path = model_paths(path)
    if not card_path.is_file():
        raise ModelFileError(f"model card {card_path} not found")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"model card {card_path} is not valid JSON: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise ModelFileError(f"model card {card_path} lacks {missing}")
    return card


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Verify the weights' sha256 against the card, rebuild the network, load weights strictly."""
    weights, card_path = model_paths(path)
    card = read_card(path)
    if not weights.is_file():
        raise ModelFileError(f"weights file {weights} not found (card {card_path})")
    digest = sha256_of(weights)
    if digest != card["sha256"]:
        raise ModelFileError(
            f"sha256 of {weights} is {digest}, the card {card_path} says {card['sha256']}: "
            "the weights are corrupt or belong to another model"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:
        raise ModelFileError(f"cannot read weights {weights}: {exc}") from None
    try:
        model = build_score_model(card["architecture"], card["sde"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(
            f"model card {card_path} has an unusable architecture: {exc}"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"weights {weights} do not match the card's architecture: {exc}"
        ) from None
    model.to(torch.device(device)).eval().requires_grad_(False)
    return model, card
