"""`sgc send`: send DICOM files or folders to a node (this one, a PACS, Orthanc)."""

from __future__ import annotations

from pathlib import Path

import click

_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("send")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, help="Destination as AET@host:port.")
@click.option("--aet", default="SGC_SEND", show_default=True, help="Our calling AE title.")
@click.option("--tls-ca", type=_PEM, help="PEM CA bundle: send over DICOM TLS, verifying the peer.")
@click.option("--tls-cert", type=_PEM, help="PEM client certificate, if the peer asks for one.")
@click.option("--tls-key", type=_PEM, help="PEM private key of --tls-cert.")
def send_cmd(
    inputs: tuple[Path, ...],
    to: str,
    aet: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """C-STORE files (folders are searched recursively) to AET@host:port, with progress."""
    from tqdm import tqdm

    from sgc_config.settings import RemoteNode, validate_ae_title
    from sgc_node.send import collect_files, send_files
    from worker.dimse import TlsClient

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_ca is None:
        raise click.UsageError("--tls-cert needs --tls-ca (TLS verifies the peer)")
    tls = TlsClient(tls_ca, tls_cert, tls_key) if tls_ca else None
    try:
        node = RemoteNode.parse(to)
        calling = validate_ae_title(aet)
        files = collect_files(inputs)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if not files:
        raise click.ClickException("no files to send")
    with tqdm(total=len(files), unit="file", desc=f"-> {node}") as bar:
        try:
            result = send_files(
                files, node, calling, on_progress=lambda _p, _o: bar.update(1), tls=tls
            )
        except (ValueError, OSError) as exc:  # too many SOP classes, unreadable PEM files
            raise click.ClickException(str(exc)) from None
    for path, why in result.skipped:
        click.echo(f"skipped {path}: {why}", err=True)
    for path, why in result.failed:
        click.echo(f"failed  {path}: {why}", err=True)
    click.echo(
        f"sent {len(result.sent)}, failed {len(result.failed)}, skipped {len(result.skipped)}"
    )
    if result.failed or result.skipped:
        raise SystemExit(1)


COMMANDS = [send_cmd]
