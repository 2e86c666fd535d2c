"""Per-process resources of a worker: the database sessions and the loaded model.

Why cached per process: loading the score network (and moving it to a GPU) costs seconds and
memory, so a worker process loads it once, at start (see ``celery_app``) or on first use, and
keeps it for every task. Engines are keyed by process id too: a pool child forked from a parent
must not reuse the parent's database connections.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

import sgc_core  # noqa: F401  (first: it sets how torch's threads wait, before torch loads)
from sgc_config.settings import Settings

if TYPE_CHECKING:
    from sgc_core.view_model import ViewModel

log = logging.getLogger(__name__)

_lock = threading.Lock()
_sessions: dict[tuple[int, str], sessionmaker[Session]] = {}
_classifiers: dict[tuple[int, str, str], ViewModel] = {}

#: Where the bundled demo models live (package data of sgc_core).
BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "sgc_core" / "models"
#: The default among them: the lesion finder (located findings at 0.4 mm). The older
#: whole-view model (64 px, no localisation) stays available through SGC_MODEL.
DEFAULT_BUNDLED = "sgc-lesion-mammo"


class ModelUnavailable(RuntimeError):
    """No usable model: the message says what to set; classification cannot run."""


def sessions_for(settings: Settings) -> sessionmaker[Session]:
    """The session factory of this process for the configured database."""
    from db.session import make_engine, make_session_factory

    key = (os.getpid(), settings.resolved_database_url)
    with _lock:
        factory = _sessions.get(key)
        if factory is None:
            factory = make_session_factory(make_engine(settings.resolved_database_url))
            _sessions[key] = factory
        return factory


def resolve_device(requested: str) -> str:
    """``SGC_DEVICE``: ``auto`` picks the first CUDA GPU when there is one, else the CPU;
    ``cuda:N`` must name a GPU that exists (a clear error beats a late CUDA exception)."""
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelUnavailable(f"SGC_DEVICE={requested} but no CUDA GPU is available")
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ModelUnavailable(
                f"SGC_DEVICE={requested} but only {torch.cuda.device_count()} GPU(s) exist"
            )
        return f"cuda:{index}"
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelUnavailable("SGC_DEVICE=mps but MPS is not available")
    return requested


def resolve_model_path(settings: Settings) -> Path:
    """``SGC_MODEL``, else the bundled demo model."""
    if settings.model is not None:
        return settings.model
    default = BUNDLED_MODELS / f"{DEFAULT_BUNDLED}.safetensors"
    if default.is_file():
        return default
    bundled = sorted(BUNDLED_MODELS.glob("*.safetensors")) if BUNDLED_MODELS.is_dir() else []
    if not bundled:
        raise ModelUnavailable(
            "no model: set SGC_MODEL to a .safetensors checkpoint (with its .json card)"
        )
    return bundled[0]


def classifier_for(settings: Settings) -> ViewModel:
    """The model of this process (loaded on first call, then reused): the lesion finder or a
    whole-view classifier, as its card says (``sgc_core.view_model``)."""
    from sgc_core.checkpoint import ModelFileError
    from sgc_core.view_model import load_view_model

    path = resolve_model_path(settings)
    device = resolve_device(settings.device)
    key = (os.getpid(), str(Path(path).resolve()), device)
    with _lock:
        classifier = _classifiers.get(key)
        if classifier is None:
            try:
                if device == "cpu" and settings.torch_threads:
                    import torch

                    torch.set_num_threads(settings.torch_threads)  # process-wide, before the model
                classifier = load_view_model(path, device, settings.classify_memory_mb)
            except (ModelFileError, OSError, ValueError) as exc:
                raise ModelUnavailable(f"cannot load model {path}: {exc}") from exc
            card = classifier.card
            log.info(
                "model %s %s (sha256 %s...) loaded on %s",
                card.name,
                card.version,
                card.sha256[:12],
                device,
            )
            _classifiers[key] = classifier
        return classifier
