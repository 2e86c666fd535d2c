"""`sgc classify`: classify DICOM files offline, print the table, optionally write the SR."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sgc_node.cli import Context, pass_ctx


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model checkpoint (default: SGC_MODEL, else the bundled demo model).",
)
@click.option(
    "--sr",
    "sr_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write each study's report objects (SGC_REPORT_FORMATS: SR, evidence SEG, CAD SR) "
    "into this folder.",
)
@click.option(
    "--evidence",
    "evidence_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write each scored view's evidence map (downsampled, with its map to source pixels) "
    "into this folder as <SOPInstanceUID>.npz (view-<N>.npz where the UID is unusable).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def classify_cmd(
    ctx: Context,
    inputs: tuple[Path, ...],
    model: Path | None,
    sr_dir: Path | None,
    evidence_dir: Path | None,
    as_json: bool,
) -> None:
    """Classify DICOM files (folders are searched) with the node's model and preprocessing."""
    from sgc_node.send import collect_files
    from worker.offline import classify_files, write_reports
    from worker.runtime import ModelUnavailable, classifier_for

    settings = ctx.settings
    if model is not None:
        settings = settings.model_copy(update={"model": model})
    try:
        files = collect_files(inputs)
        classifier = classifier_for(settings)
    except (FileNotFoundError, ModelUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if not files:
        raise click.ClickException("no files to classify")
    results = classify_files(classifier, files)
    formats = settings.report_formats
    written = write_reports(classifier, results, sr_dir, formats) if sr_dir else []
    rows = [_row(r) for r in results]
    if evidence_dir is not None:
        used: set[str] = set()
        for i, (row, r) in enumerate(zip(rows, results, strict=True)):
            row["evidence"] = write_evidence(r, evidence_dir, evidence_name(r, i, used))
    exams = _exams(classifier, results)
    if as_json:
        doc = {
            "model": classifier.card.name,
            "images": rows,
            "studies": exams,
            "reports": [str(p) for p in written],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        _table(rows)
        for r in rows:
            if r["ood_reason"]:
                click.echo(f"{Path(r['path']).name}: out of distribution: {r['ood_reason']}")
        for study, exam in exams.items():
            if exam.get("p_malignant") is not None:
                click.echo(_study_line(study, exam))
        for path in written + [Path(r["evidence"]["path"]) for r in rows if r.get("evidence")]:
            click.echo(f"wrote {path}")
    if any(r["error"] for r in rows):
        raise SystemExit(1)


def _row(r) -> dict:
    """One file's JSON form: the typed view result plus where it came from."""
    res = r.result.to_dict() if r.result is not None else {}
    probabilities = dict(r.result.extra.get("probabilities") or {}) if r.result else {}
    if r.result is not None and r.result.p_malignant is not None:
        probabilities.setdefault("malignant", r.result.p_malignant)
    return {
        "path": str(r.path),
        "sop_instance_uid": r.sop_instance_uid or None,
        "study_uid": r.study_uid or None,
        "laterality": r.laterality or None,
        "view": r.view or None,
        "predicted_class": res.get("predicted_class"),
        "p_malignant": res.get("p_malignant"),
        "probabilities": probabilities,
        "findings": res.get("findings", []),
        "breast_box": res.get("breast_box"),
        "ood": res.get("ood"),
        "ood_reason": res.get("ood_reason"),
        "error": r.error,
    }


def evidence_name(outcome, index: int, used: set[str]) -> str:
    """``<SOPInstanceUID>.npz``; a UID that is not a plain DICOM UID (it could hold a path) or
    one already written in this run gets the file's place in the run instead."""
    import re

    uid = str(outcome.sop_instance_uid or "")
    name = f"{uid}.npz" if re.fullmatch(r"[0-9][0-9.]{0,63}", uid) else f"view-{index}.npz"
    if name in used:
        name = f"view-{index}.npz"
    used.add(name)
    return name


def write_evidence(outcome, folder: Path, name: str) -> dict | None:
    """Save a scored view's evidence map as ``<SOPInstanceUID>.npz`` and describe it.

    Why a file beside the JSON, not in it: the map has thousands of values per view, which
    would bury the findings in the printed document. The file holds ``values`` (nats per
    pixel, > 0 favours malignant over normal) and the map's own placement on the source image
    (``origin``, ``step``, ``flipped``, as ``sgc_core.results.EvidenceMap``), so a reader can
    overlay it without the node."""
    import numpy as np

    ev = outcome.result.evidence if outcome.result is not None else None
    if ev is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez_compressed(path, values=ev.values, origin=ev.origin, step=ev.step, flipped=ev.flipped)
    return {
        "path": str(path),
        "shape": list(ev.values.shape),
        "origin": [round(v, 2) for v in ev.origin],
        "step": [round(v, 3) for v in ev.step],
        "flipped": ev.flipped,
    }


def _study_line(study: str, exam: dict) -> str:
    """The study's exam-level result, and how many of its views were flagged out of
    distribution (they are still read, so a reader must know)."""
    line = f"study {study}: P(malignant) {100 * exam['p_malignant']:.1f} % "
    line += f"({exam['predicted_class']})"
    if exam["views_ood"]:
        line += f"; {exam['views_ood']} of {exam['views']} views flagged out of distribution"
    return line


def _exams(model, results) -> dict[str, dict]:
    from collections import defaultdict

    by_study = defaultdict(list)
    for r in results:
        if r.result is not None:
            by_study[r.study_uid].append(r.result)
    out = {}
    for study, views in by_study.items():
        exam = model.exam(views)
        if exam is not None:
            # The exam reads every scored view, flagged or not: say how many were flagged.
            flagged = sum(bool(v.ood) for v in views)
            out[study] = {**exam.to_dict(), "views": len(views), "views_ood": flagged}
    return out


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sgc classify")
    for col in (
        "file",
        "view",
        "class",
        "P(malignant)",
        "findings (row, col: class, P(malignant), depth)",
        "OOD",
    ):
        table.add_column(col)
    for r in rows:
        p = r["p_malignant"]
        table.add_row(
            Path(r["path"]).name,
            f"{r['laterality'] or '?'} {r['view'] or '?'}",
            r["predicted_class"] or f"error: {r['error']}",
            "-" if p is None else f"{100 * p:.1f} %",
            "\n".join(_finding_text(f) for f in r["findings"]) or "-",
            "-" if r["ood"] is None else ("yes" if r["ood"] else "no"),
        )
    Console().print(table)


def _finding_text(f: dict) -> str:
    row, col = f["centre"]
    return f"({row:.0f}, {col:.0f}): {f['label']} {100 * f['p_malignant']:.0f} %{depth_text(f)}"


def depth_text(finding: dict) -> str:
    """The finding's depth as the CLI writes it, e.g. ", 42 mm from nipple, both views" (a
    reader matches a CC mark with an MLO mark by it); empty where the finding has no measured
    distance (predictions stored before it was)."""
    mm = finding.get("nipple_distance_mm")
    if mm is None:
        return ""
    both = ", both views" if finding.get("in_partner_view") else ""
    return f", {mm:.0f} mm from nipple{both}"


COMMANDS = [classify_cmd]
