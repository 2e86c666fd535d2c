"""`sgc status`: what the node received, classified and delivered (table or JSON)."""

from __future__ import annotations

import json

import click

from sgc_node.cli import Context, pass_ctx


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

    table = Table(title="sgc-node: recent studies", show_lines=True)
    for col in ("study", "inst", "job", "view", "class", "P(malignant)", "OOD", "report/delivery"):
        table.add_column(col)
    for st in studies:
        job = st["job"]
        job_cell = "waiting (settling)" if job is None else f"r{job['revision']} {job['state']}"
        if job and job["lost_attempts"]:
            job_cell += f" (worker lost x{job['lost_attempts']})"
        if job and job["error"]:
            job_cell += f"\n{job['error'][:80]}"
        preds = job["predictions"] if job else []
        views = "\n".join(f"{p['laterality'] or '?'} {p['view'] or '?'}" for p in preds)
        classes = "\n".join(str(p["predicted_class"] or p.get("error") or "-") for p in preds)
        probs = "\n".join(_p_malignant(p) for p in preds)
        ood = "\n".join("yes" if p["ood"] else "no" for p in preds)
        deliveries = []
        for report in job["reports"] if job else []:
            for d in report["deliveries"]:
                line = f"{d['destination']}: {d['state']}"
                if d["last_error"] and d["state"] != "sent":
                    line += f" ({d['last_error'][:60]})"
                deliveries.append(line)
            if not report["deliveries"]:
                deliveries.append("SR written (no archive configured)")
        table.add_row(
            st["study_uid"],
            f"{st['instances']}",
            job_cell,
            views,
            classes,
            probs,
            ood,
            "\n".join(deliveries),
        )
    console = Console()
    console.print(table)
    jobs = ", ".join(f"{k} {v}" for k, v in summary["jobs"].items())
    dels = ", ".join(f"{k} {v}" for k, v in summary["deliveries"].items())
    lost = summary["workers_lost"]
    console.print(
        f"jobs: {jobs}   deliveries: {dels}   workers lost while classifying: "
        f"{lost['attempts']}, poison jobs: {lost['poison_jobs']}"
    )


def _p_malignant(pred: dict) -> str:
    p = pred["probabilities"].get("malignant")
    return "-" if p is None else f"{100 * p:.1f} %"


COMMANDS = [status_cmd]
