"""Self-signed certificates for DICOM TLS tests, made with the openssl command."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_binary


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) for CN=``name`` valid for 127.0.0.1; also usable as its own CA."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
