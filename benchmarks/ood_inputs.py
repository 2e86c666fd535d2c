"""Inputs that are not screening mammograms, for the bundled model's OOD check, and timings.

Why DICOM and not tensors: the node receives DICOM, so every input goes through the card's
own preprocessing (``sgc_core.preprocess``) exactly as the worker does it. The kinds:

* ``ct`` / ``mr``: the CT and MR slices shipped with pydicom (``CT_small.dcm``,
  ``MR_small.dcm`` and their re-encodings), processed with ``modality_policy="ood"``;
* ``noise``: a synthetic mammogram's header (Modality MG) with uniform random 12-bit pixels;
* ``blank``: the same header with constant pixels (black, mid-grey, white).

An image the preprocessing refuses (``PreprocessError``) is counted as flagged and reported
as refused: the node never classifies it as a mammogram.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

CT_FILES = ("CT_small.dcm",)
MR_FILES = ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm")


def _mg_template() -> Dataset:
    from sgc_core.synth import SynthConfig, generate_study

    return generate_study(12345, SynthConfig(difficulty=0.5))[0]


def _with_pixels(template: Dataset, pixels: np.ndarray) -> Dataset:
    # A deep copy: Dataset.copy() shares the data elements, so every copy would end up with
    # the pixels assigned last.
    ds = copy.deepcopy(template)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def non_mammography_inputs(card: dict, n_noise: int = 40, seed: int = 0) -> dict[str, list]:
    """{kind: [pydicom Dataset, ...]} for the kinds in the module docstring."""
    from pydicom.data import get_testdata_file

    out: dict[str, list] = {"ct": [], "mr": []}
    for kind, names in (("ct", CT_FILES), ("mr", MR_FILES)):
        for name in names:
            path = get_testdata_file(name, download=False)
            if path is not None:
                out[kind].append(pydicom.dcmread(path))
    template = _mg_template()
    rows, cols = int(template.Rows), int(template.Columns)
    rng = np.random.default_rng(seed)
    hi = 2 ** int(template.BitsStored) - 1
    out["noise"] = [
        _with_pixels(template, rng.integers(0, hi + 1, size=(rows, cols))) for _ in range(n_noise)
    ]
    out["blank"] = [
        _with_pixels(template, np.full((rows, cols), v)) for v in (0, hi // 4, hi // 2, hi)
    ]
    del card
    return out


def preprocess_for(card):
    """The preprocessing a whole-view model's card (sgc_core.model_card.ModelCard) names."""
    from sgc_core.preprocess import PreprocessConfig

    return PreprocessConfig.from_dict(dict(card.data["preprocess"]))


def ood_rate(clf, datasets: list) -> dict:
    """How many of ``datasets`` the classifier flags (or the preprocessing refuses)."""
    import torch

    from sgc_core.preprocess import PreprocessError, preprocess_dataset

    config = preprocess_for(clf.card)
    refused, tensors, input_ood = 0, [], []
    for ds in datasets:
        try:
            pre = preprocess_dataset(ds, config)
        except PreprocessError:
            refused += 1
            continue
        tensors.append(pre.tensor)
        input_ood.append(pre.ood_reasons)
    flagged = refused
    scores, by_input = [], 0
    if tensors:
        results = clf.classify(torch.stack(tensors), input_ood)
        flagged += sum(r.ood for r in results)
        scores = [round(r.ood_score, 4) for r in results]
        by_input = sum(1 for reasons in input_ood if reasons)
    return {
        "n": len(datasets),
        "flagged": flagged,
        "refused": refused,
        "flagged_by_input_checks": by_input,
        "bits_per_dim": scores,
    }


def time_one_image(clf, path: Path, repeats: int = 5) -> dict:
    """Median seconds of read + preprocess and of classify, one image at a time."""
    import torch

    from sgc_core.preprocess import preprocess_file

    config = preprocess_for(clf.card)
    pre, cls = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = preprocess_file(path, config).tensor
        t1 = time.perf_counter()
        clf.classify(x[None].to(torch.float32))
        t2 = time.perf_counter()
        pre.append(t1 - t0)
        cls.append(t2 - t1)
    return {
        "image": str(path.name),
        "threads": torch.get_num_threads(),
        "preprocess_s": round(float(np.median(pre)), 4),
        "classify_s": round(float(np.median(cls)), 4),
        "total_s": round(float(np.median(pre) + np.median(cls)), 4),
    }


def full_size_timings(clf, folder: Path) -> dict:
    """Read + preprocess + classify of one full-field (3328 x 2560) synthetic image, stored
    uncompressed and as JPEG 2000 lossless: what the node meets from a real modality."""
    from pydicom.uid import JPEG2000Lossless

    from sgc_core.synth import SynthConfig, generate_study

    folder.mkdir(parents=True, exist_ok=True)
    ds = generate_study(2024, SynthConfig.for_size("full", difficulty=0.0))[0]
    raw = folder / "full_uncompressed.dcm"
    ds.save_as(raw, enforce_file_format=True)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    j2k = folder / "full_jpeg2000.dcm"
    ds.save_as(j2k, enforce_file_format=True)
    return {
        "uncompressed": time_one_image(clf, raw, repeats=3),
        "jpeg2000_lossless": time_one_image(clf, j2k, repeats=3),
    }
