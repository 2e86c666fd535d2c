"""Synthetic full-field digital mammography studies (phantoms) as valid DICOM MG images.

``generate_study(seed, config)`` returns the four views of one patient; ``write_dataset``
writes a whole labelled data set (DICOM files + labels.csv). See docs/synthetic.md.
"""

from sgc_core.synth.config import SIZES, SynthConfig, parse_size
from sgc_core.synth.study import (
    LABEL_COLUMNS,
    SyntheticStudy,
    ViewTruth,
    assign_splits,
    generate_study,
    generate_study_with_truth,
    write_dataset,
)

__all__ = [
    "LABEL_COLUMNS",
    "SIZES",
    "SynthConfig",
    "SyntheticStudy",
    "ViewTruth",
    "assign_splits",
    "generate_study",
    "generate_study_with_truth",
    "parse_size",
    "write_dataset",
]
