"""`sgc status`: what the node received, classified and delivered (table or JSON)."""

from __future__ import annotations

import json

import click

from sgc_node.cli import Context, pass_ctx
from sgc_node.cli.classify import depth_text


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=20, show_default=True, help="How many recent studies.")
@click.option("--study", "study_uid", default=None, help="Only this Study Instance UID.")
@pass_ctx
def status_cmd(ctx: Context, as_json: bool, limit: int, study_uid: str | None) -> None:
    """Show recent studies: instances, job state, per-view prediction, report and delivery."""
    from db.queries import counts, study_overview
    from db.session import make_engine, make_session_factory

    engine = make_engine(ctx.settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            studies = study_overview(session, limit=limit, study_uid=study_uid)
            summary = counts(session)
    except Exception as exc:
        raise click.ClickException(f"cannot read the database: {exc}") from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"summary": summary, "studies": studies}, indent=2))
        return
    _print_table(studies, summary)


def _print_table(studies: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sgc-node: recent studies")
    columns = ("study", "inst", "job", "view", "class", "P(malignant)", "findings", "OOD")
    for col in (*columns, "report/delivery"):
        table.add_column(col)
    for st in studies:
        _add_study(table, st)
    console = Console()
    console.print(table)
    jobs = ", ".join(f"{k} {v}" for k, v in summary["jobs"].items())
    dels = ", ".join(f"{k} {v}" for k, v in summary["deliveries"].items())
    lost = summary["workers_lost"]
    console.print(
        f"jobs: {jobs}   deliveries: {dels}   workers lost while classifying: "
        f"{lost['attempts']}, poison jobs: {lost['poison_jobs']}"
    )


def _add_study(table, st: dict) -> None:
    """One row per view, so a view's findings stay on its row however far they wrap; the
    study, job and deliveries on its first row, and a rule under its last."""
    job = st["job"]
    job_cell = "waiting (settling)" if job is None else f"r{job['revision']} {job['state']}"
    if job and job["lost_attempts"]:
        job_cell += f" (worker lost x{job['lost_attempts']})"
    if job and job["error"]:
        job_cell += f"\n{job['error'][:80]}"
    preds = (job["predictions"] if job else []) or [None]
    deliveries = [_delivery_line(r) for r in (job["reports"] if job else [])]
    head = [st["study_uid"], f"{st['instances']}", job_cell]
    for i, p in enumerate(preds):
        view = ["-"] * 5 if p is None else _view_cells(p)
        first = i == 0
        table.add_row(
            *(head if first else ["", "", ""]),
            *view,
            "\n".join(_counted(line for lines in deliveries for line in lines)) if first else "",
            end_section=i == len(preds) - 1,
        )


def _view_cells(p: dict) -> list[str]:
    """view, class, P(malignant), findings, OOD of one prediction."""
    return [
        f"{p['laterality'] or '?'} {p['view'] or '?'}",
        str(p["predicted_class"] or p.get("error") or "-"),
        _p_malignant(p),
        _findings(p),
        "yes" if p["ood"] else "no",
    ]


#: The report form by the stored file's suffix (worker/classify.py names them so).
_FORMS = {".sr.dcm": "SR", ".seg.dcm": "SEG", ".cad.dcm": "CAD SR"}


def _delivery_line(report: dict) -> list[str]:
    """A report's deliveries, each named by the report's form (SR, SEG, CAD SR)."""
    path = report.get("path") or ""
    form = next((f for suffix, f in _FORMS.items() if path.endswith(suffix)), "SR")
    lines = []
    for d in report["deliveries"]:
        line = f"{form} -> {d['destination']}: {d['state']}"
        if d["last_error"] and d["state"] != "sent":
            line += f" ({d['last_error'][:60]})"
        lines.append(line)
    return lines or [f"{form} written (no archive configured)"]


def _counted(lines) -> list[str]:
    """Identical lines once, with their count (a study's SEGs, one per view, read as one)."""
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return [line if n == 1 else f"{n} x {line}" for line, n in counts.items()]


def _findings(pred: dict) -> str:
    """A view's located findings: (row, col) in source pixels, class, P(malignant), depth."""
    parts = []
    for f in pred.get("findings") or []:
        row, col = f["centre"]
        parts.append(
            f"({row:.0f}, {col:.0f}) {f['label']} {100 * f['p_malignant']:.0f} %{depth_text(f)}"
        )
    return "; ".join(parts) or "-"


def _p_malignant(pred: dict) -> str:
    p = pred["probabilities"].get("malignant")
    return "-" if p is None else f"{100 * p:.1f} %"


COMMANDS = [status_cmd]
