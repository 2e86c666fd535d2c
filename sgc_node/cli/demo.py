"""`sgc demo`: see the node work end to end in one command (what `make demo` runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

PORT = click.IntRange(0, 65535)


def _port_option(name: str, envvar: str, default: int, what: str):
    return click.option(
        name, envvar=envvar, type=PORT, default=default, show_default=True, show_envvar=True,
        help=f"{what} (0: a free port).",
    )  # fmt: skip


@click.command("demo")
@click.option(
    "--studies",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Synthetic 4-view studies (~10 s each to classify on a CPU).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed of the synthetic set [default: one with a malignant, a benign and a normal study].",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for everything (new or empty) [default: a temporary folder].",
)
@click.option("--keep", is_flag=True, help="Keep the folder (archive, node data, logs) at exit.")
@click.option("--once", is_flag=True, help="Exit after printing the results (for scripts).")
@_port_option("--viewer-port", "SGC_DEMO_VIEWER_PORT", 3000, "OHIF's port")
@_port_option("--orthanc-port", "SGC_DEMO_ORTHANC_PORT", 0, "Orthanc's HTTP port")
@_port_option("--orthanc-dicom-port", "SGC_DEMO_ORTHANC_DICOM_PORT", 0, "Orthanc's DICOM port")
@_port_option("--node-port", "SGC_DEMO_NODE_PORT", 0, "The node's DICOM port")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    help="Seconds to wait for all results.",
)
def demo_cmd(
    studies: int,
    seed: int | None,
    folder: Path | None,
    keep: bool,
    once: bool,
    viewer_port: int,
    orthanc_port: int,
    orthanc_dicom_port: int,
    node_port: int,
    timeout: float,
) -> None:
    """Start a throw-away Orthanc, the node and OHIF on this machine's loopback; have Orthanc
    push a small synthetic screening set to the node, print each study's result as its report
    arrives in Orthanc, and the OHIF address of the malignant study with its report.

    Ctrl-C stops everything; nothing is left running.
    """
    from sgc_node.demo import run_demo
    from sgc_node.demo_options import DemoError, DemoOptions
    from sgc_node.demo_set import DEFAULT_SEED
    from sgc_node.ports import PortTaken

    opts = DemoOptions(
        studies=studies,
        seed=DEFAULT_SEED if seed is None else seed,
        folder=folder,
        keep=keep,
        once=once,
        viewer_port=viewer_port,
        orthanc_port=orthanc_port,
        orthanc_dicom_port=orthanc_dicom_port,
        node_port=node_port,
        timeout=timeout,
    )
    try:
        code = run_demo(opts, click.echo)
    except (DemoError, PortTaken) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


COMMANDS = [demo_cmd]
