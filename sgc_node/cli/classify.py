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
    help="Write one Structured Report per study into this folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def classify_cmd(
    ctx: Context, inputs: tuple[Path, ...], model: Path | None, sr_dir: Path | None, as_json: bool
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
    written = write_reports(classifier, results, sr_dir) if sr_dir else []
    positive = classifier.card.get("positive_class") or classifier.classes[-1]
    rows = [
        {
            "path": str(r.path),
            "sop_instance_uid": r.sop_instance_uid or None,
            "laterality": r.laterality or None,
            "view": r.view or None,
            "predicted_class": r.result.predicted_class if r.result else None,
            "probabilities": dict(r.result.probabilities) if r.result else {},
            "ood": bool(r.result.ood) if r.result else None,
            "ood_reason": r.result.ood_reason if r.result else None,
            "error": r.error,
        }
        for r in results
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": classifier.card.get("name"),
                    "images": rows,
                    "reports": [str(p) for p in written],
                },
                indent=2,
            )
        )
    else:
        _table(rows, positive)
        for r in rows:
            if r["ood_reason"]:
                click.echo(f"{Path(r['path']).name}: out of distribution: {r['ood_reason']}")
        for path in written:
            click.echo(f"wrote {path}")
    if any(r["error"] for r in rows):
        raise SystemExit(1)


def _table(rows: list[dict], positive: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sgc classify")
    for col in ("file", "view", "class", f"P({positive})", "OOD"):
        table.add_column(col)
    for r in rows:
        p = r["probabilities"].get(positive)
        table.add_row(
            Path(r["path"]).name,
            f"{r['laterality'] or '?'} {r['view'] or '?'}",
            r["predicted_class"] or f"error: {r['error']}",
            "-" if p is None else f"{100 * p:.1f} %",
            "-" if r["ood"] is None else ("yes" if r["ood"] else "no"),
        )
    Console().print(table)


COMMANDS = [classify_cmd]
