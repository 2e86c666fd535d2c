"""What `sgc demo` is asked for: its options and the ports they name.

Why apart from the demo itself: the command line builds these and checks the ports before
anything starts, without importing what the demo runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sgc_node.demo_set import DEFAULT_SEED
from sgc_node.ports import PortRequest


class DemoError(RuntimeError):
    """Something the demo needs failed; the message is one line that says what to do."""


@dataclass(frozen=True)
class DemoOptions:
    studies: int = 3
    seed: int = DEFAULT_SEED
    folder: Path | None = None
    keep: bool = False
    once: bool = False
    viewer_port: int = 3000
    orthanc_port: int = 0
    orthanc_dicom_port: int = 0
    node_port: int = 0
    timeout: float = 900.0


def port_requests(opts: DemoOptions) -> list[PortRequest]:
    """The four ports, each with the option (and variable) that moves it."""
    return [
        PortRequest("the OHIF viewer", opts.viewer_port, "--viewer-port / SGC_DEMO_VIEWER_PORT"),
        PortRequest(
            "Orthanc's HTTP API", opts.orthanc_port, "--orthanc-port / SGC_DEMO_ORTHANC_PORT"
        ),
        PortRequest(
            "Orthanc's DICOM server",
            opts.orthanc_dicom_port,
            "--orthanc-dicom-port / SGC_DEMO_ORTHANC_DICOM_PORT",
        ),
        PortRequest("the node's DICOM server", opts.node_port, "--node-port / SGC_DEMO_NODE_PORT"),
    ]
