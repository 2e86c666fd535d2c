"""Inputs that are not screening mammograms, for the bundled model's OOD check, and timings.

Why DICOM and not tensors: the node receives DICOM, so every input goes through the card's
own preprocessing (``sgc_core.preprocess``) exactly as the worker does it. The kinds:

* ``ct`` / ``mr``: the CT and MR slices shipped with pydicom (``CT_small.dcm``,
  ``MR_small.dcm`` and their re-encodings), processed with ``modality_policy="ood"``;
* ``noise``: a synthetic mammogram's header (Modality MG) with uniform random 12-bit pixels;
* ``blank``: the same header with constant pixels (black, mid-grey, white);
* ``other``: the other real images shipped with pydicom, as stored (CT, MR, NM, ultrasound,
  secondary captures in colour and grey): what a misrouted series brings;
* ``relabelled``: the grey content of every real image above (CT, MR, NM, ultrasound, a
  photograph-like capture) resampled to a medium-size (~0.3 mm) mammogram's size and bit
  depth under that synthetic mammogram's header. The header check passes them, so only the
  pixel checks (sgc_core/input_checks.py) and the model's denoising-error band can flag
  them: the hard case, a non-breast image sent as MG;
* ``pictures``: the same, for every picture shipped inside scikit-image and matplotlib
  (photographs, micrographs, a retina, the Moon, text, a Shepp-Logan phantom, ...). Kept
  apart because the placement check of sgc_core/input_checks.py was set after the
  ``relabelled`` kind had been seen, and before these were;
* ``unseen``: the same, for the pictures and arrays shipped with scikit-learn, scikit-image
  and matplotlib that ``pictures`` does not read (two photographs, an MR head section, a
  logo, a photographed parcel, two elevation maps, a smooth two-dimensional bell, a
  disparity map, five face thumbnails, a cartoon frame). Kept apart because the shape check
  of sgc_core/input_checks.py was set after ``pictures`` had been seen, and before these
  were (benchmarks/results/lesion_ood/adoption-rule-shape.md).

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
# Distinct real pictures (re-encodings of one picture left out), none of them a breast.
OTHER_FILES = (
    "693_J2KI.dcm",  # CT, 512 x 512
    "J2K_pixelrep_mismatch.dcm",  # CT
    "examples_overlay.dcm",  # MR, 300 x 484
    "JPEG2000.dcm",  # NM, 1024 x 256
    "examples_jpeg2k.dcm",  # ultrasound, RGB
    "examples_palette.dcm",  # ultrasound, palette colour
    "examples_rgb_color.dcm",  # ultrasound, RGB
    "image_dfl.dcm",  # secondary capture, grey
    "SC_rgb_jpeg.dcm",  # secondary capture, colour
    "GDCMJ2K_TextGBR.dcm",  # secondary capture, text
)


def _mg_template(size: str = "small") -> Dataset:
    from sgc_core.synth import SynthConfig, generate_study

    return generate_study(12345, SynthConfig.for_size(size, difficulty=0.5))[0]


def _with_pixels(template: Dataset, pixels: np.ndarray) -> Dataset:
    # A deep copy: Dataset.copy() shares the data elements, so every copy would end up with
    # the pixels assigned last.
    ds = copy.deepcopy(template)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def _shipped(names) -> list[Dataset]:
    """pydicom's own test images of these names (never downloaded; absent ones skipped)."""
    import warnings

    from pydicom.data import get_testdata_file

    paths = [get_testdata_file(name, download=False) for name in names]
    with warnings.catch_warnings():  # one of them is implicit VR under an explicit-VR header
        warnings.simplefilter("ignore", UserWarning)
        return [pydicom.dcmread(p) for p in paths if p is not None]


def _source_name(ds: Dataset) -> str:
    return Path(str(getattr(ds, "filename", "") or "?")).name


def _grey(ds: Dataset) -> np.ndarray:
    """A stored image's first frame as grey values (palette colour looked up; pydicom's
    ``pixel_array`` already returns YBR colour as RGB)."""
    from pydicom.pixels import apply_color_lut

    px = ds.pixel_array
    if str(ds.PhotometricInterpretation) == "PALETTE COLOR":
        px = apply_color_lut(px, ds)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        px = px[0]
    return px.mean(axis=-1) if px.ndim == 3 else px.astype(np.float64)


def _pictures() -> list[tuple[str, np.ndarray]]:
    """Grey versions of the pictures bundled with scikit-image and matplotlib (no download)."""
    import matplotlib
    import skimage
    from PIL import Image

    folder = Path(skimage.__file__).parent / "data"
    paths = sorted([*folder.glob("*.png"), *folder.glob("*.jpg")])
    paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    return [
        (p.name, np.asarray(Image.open(p).convert("L"), dtype=np.float64))
        for p in paths
        if p.exists()
    ]


def _relabelled(template: Dataset, picture: Dataset | np.ndarray, name: str) -> Dataset:
    """A picture at the mammogram's size and bit depth under its header (Modality MG), named
    in ImageComments."""
    from scipy import ndimage

    grey = _grey(picture) if isinstance(picture, Dataset) else picture
    grey = grey.astype(np.float64)
    rows, cols = int(template.Rows), int(template.Columns)
    grey = ndimage.zoom(grey, (rows / grey.shape[0], cols / grey.shape[1]), order=1)
    lo, hi = np.percentile(grey, (0.5, 99.5))
    top = 2 ** int(template.BitsStored) - 1
    scaled = np.clip((grey - lo) / max(hi - lo, 1e-9), 0, 1) * top
    out = _with_pixels(template, np.round(scaled[:rows, :cols]))
    out.ImageComments = f"{name} relabelled as MG"
    return out


def _unseen() -> list[tuple[str, np.ndarray]]:
    """Grey arrays of the ``unseen`` kind (module docstring), each under its file's name."""
    import gzip

    import matplotlib
    import skimage
    import sklearn
    from PIL import Image

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    skdata = Path(skimage.__file__).parent / "data"

    def picture(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("L"), dtype=np.float64)

    photos = Path(sklearn.__file__).parent / "datasets" / "images"
    out = [(p.name, picture(p)) for p in sorted(photos.glob("*.jpg"))]
    with gzip.open(sample / "s1045.ima.gz") as fh:
        mri = np.frombuffer(fh.read(), np.uint16)
    out.append(("s1045.ima", mri.reshape(256, 256).astype(np.float64)))
    out += [(n, picture(sample / n)) for n in ("logo2.png", "Minduka_Present_Blue_Pack.png")]
    out.append(("jacksboro_fault_dem", np.load(sample / "jacksboro_fault_dem.npz")["elevation"]))
    out.append(("topobathy", np.load(sample / "topobathy.npz")["topo"]))
    out.append(("bivariate_normal", np.load(sample / "axes_grid" / "bivariate_normal.npy")))
    out.append(("motorcycle_disp", np.load(skdata / "motorcycle_disp.npz")["arr_0"]))
    faces = np.load(skdata / "lfw_subset.npy")
    out += [(f"lfw_subset[{i}]", faces[i]) for i in range(0, 200, 40)]
    out.append(("no_time_for_that_tiny.gif", picture(skdata / "no_time_for_that_tiny.gif")))
    return [(name, _finite(grey)) for name, grey in out]


def _finite(grey) -> np.ndarray:
    """The array with its infinite or missing values (a disparity map has some) set to the
    nearest finite extreme."""
    grey = np.asarray(grey, dtype=np.float64)
    ok = np.isfinite(grey)
    return np.nan_to_num(grey, nan=grey[ok].min(), posinf=grey[ok].max(), neginf=grey[ok].min())


KINDS = ("ct", "mr", "noise", "blank", "other", "relabelled", "pictures", "unseen")
# The kinds a threshold of sgc_core/input_checks.py was chosen on (the placement rule on
# ``relabelled``, the shape check on both): the goal's figure is read on the others.
CHOSEN_ON = ("relabelled", "pictures")


def non_mammography_inputs(
    card: dict, n_noise: int = 40, seed: int = 0, kinds: tuple[str, ...] = KINDS
) -> dict[str, list]:
    """{kind: [pydicom Dataset, ...]} for ``kinds`` (those of the module docstring); only the
    kinds asked for are built (the relabelled ones are resampled to a mammogram's size)."""
    del card
    makers = {
        "ct": lambda: _shipped(CT_FILES),
        "mr": lambda: _shipped(MR_FILES),
        "noise": lambda: _noise(n_noise, seed),
        "blank": _blank,
        "other": lambda: _shipped(OTHER_FILES),
        "relabelled": _relabelled_real,
        "pictures": lambda: [_relabelled(_medium(), grey, n) for n, grey in _pictures()],
        "unseen": lambda: [_relabelled(_medium(), grey, n) for n, grey in _unseen()],
    }
    return {kind: makers[kind]() for kind in kinds}


def _noise(n: int, seed: int) -> list[Dataset]:
    template = _mg_template()
    rows, cols = int(template.Rows), int(template.Columns)
    rng = np.random.default_rng(seed)
    hi = 2 ** int(template.BitsStored) - 1
    return [_with_pixels(template, rng.integers(0, hi + 1, size=(rows, cols))) for _ in range(n)]


def _blank() -> list[Dataset]:
    template = _mg_template()
    rows, cols = int(template.Rows), int(template.Columns)
    hi = 2 ** int(template.BitsStored) - 1
    return [_with_pixels(template, np.full((rows, cols), v)) for v in (0, hi // 4, hi // 2, hi)]


def _medium() -> Dataset:
    """At the size the lesion finder reads (~0.3 mm pixels), where a real mammogram would be."""
    return _mg_template("medium")


def _relabelled_real() -> list[Dataset]:
    real = _shipped(CT_FILES) + _shipped(MR_FILES[:1]) + _shipped(OTHER_FILES)
    medium = _medium()
    return [_relabelled(medium, ds, _source_name(ds)) for ds in real]


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
