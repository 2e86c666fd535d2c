"""`sgc viewer`: review the node's reports in OHIF against an Orthanc archive."""

from __future__ import annotations

from pathlib import Path

import click

VIEWER_DIR = Path(__file__).resolve().parents[2] / "viewer"


@click.command("viewer")
@click.option(
    "--orthanc",
    default="http://127.0.0.1:8042",
    show_default=True,
    help="Orthanc's HTTP root (DICOMweb plugin enabled).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--dist",
    type=click.Path(path_type=Path),
    default=VIEWER_DIR / "dist",
    show_default=True,
    help="OHIF's prebuilt dist/ (viewer/fetch-ohif.sh gets it).",
)
@click.option(
    "--app-config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=VIEWER_DIR / "app-config.js",
    show_default=True,
    help="OHIF app-config.js pointing at /dicom-web on the same origin.",
)
def viewer_cmd(orthanc: str, host: str, port: int, dist: Path, app_config: Path) -> None:
    """Serve OHIF with a same-origin proxy to Orthanc's DICOMweb (open the printed URL)."""
    from sgc_node.viewer import make_server

    try:
        server = make_server(dist, app_config, orthanc, host, port)
    except (FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"OHIF on http://{host}:{server.server_address[1]}/ (Orthanc {orthanc}); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [viewer_cmd]
