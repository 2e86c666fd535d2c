"""Classify DICOM files without the node (for `sgc classify`): the job's pipeline and SR,
minus the database and the broker."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sgc_core.view_model import ViewModel
from worker import pipeline
from worker import reports as srmod
from worker.pipeline import ViewOutcome


def classify_files(model: ViewModel, paths: list[Path], batch: int = 8) -> list[ViewOutcome]:
    """Classify ``paths`` in batches of ``batch`` files (bounded memory on large sets)."""
    out: list[ViewOutcome] = []
    for start in range(0, len(paths), batch):
        out.extend(pipeline.classify_paths(model, paths[start : start + batch]))
    return out


def write_reports(
    model: ViewModel,
    files: list[ViewOutcome],
    out_dir: Path,
    formats: Sequence[str] = ("tid1500",),
) -> list[Path]:
    """Each study's report objects of ``formats`` among ``files`` (revision 0: an offline run,
    not a node job), named <study>.sr.dcm, <study>.<n>.seg.dcm, <study>.cad.dcm."""
    by_study: dict[str, list[ViewOutcome]] = defaultdict(list)
    for f in files:
        if f.meta is not None:
            by_study[f.study_uid].append(f)
    written = []
    for study_uid, members in by_study.items():
        objects = pipeline.build_reports(model, members, 0, formats)
        for obj in objects:
            n = obj.dataset.InstanceNumber if obj.form == "seg" else None
            name = ".".join(str(p) for p in (study_uid, n, obj.suffix, "dcm") if p is not None)
            srmod.write_report(obj.dataset, out_dir / name)
            written.append(out_dir / name)
    return written
