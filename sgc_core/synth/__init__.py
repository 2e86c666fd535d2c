"""Synthetic full-field digital mammography studies (phantoms) as valid DICOM MG images.

``generate_study(seed, config)`` returns the four views of one patient; ``write_dataset``
writes a whole labelled data set (DICOM files + labels.csv). Named styles (styles.py) vary
texture, noise, detector and header convention; FAMILY_STYLES minus HELD_OUT_STYLE are the
TRAINING_STYLES. See docs/synthetic.md.
"""

from sgc_core.synth.config import SIZES, SynthConfig, parse_size
from sgc_core.synth.dataset import LABEL_COLUMNS, assign_splits, write_dataset
from sgc_core.synth.lesion_types import LESION_TYPES
from sgc_core.synth.study import (
    SyntheticStudy,
    ViewTruth,
    generate_study,
    generate_study_with_truth,
)
from sgc_core.synth.styles import (
    FAMILY_STYLES,
    HELD_OUT_STYLE,
    MIXED,
    STYLES,
    TRAINING_STYLES,
    Style,
    get_style,
)

__all__ = [
    "FAMILY_STYLES",
    "HELD_OUT_STYLE",
    "LABEL_COLUMNS",
    "LESION_TYPES",
    "MIXED",
    "SIZES",
    "STYLES",
    "TRAINING_STYLES",
    "Style",
    "SynthConfig",
    "SyntheticStudy",
    "ViewTruth",
    "assign_splits",
    "generate_study",
    "generate_study_with_truth",
    "get_style",
    "parse_size",
    "write_dataset",
]
