"""Certificates for TLS tests (DICOM TLS, HTTPS), made with the openssl command."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.services import require_binary


def openssl(*args: str) -> None:
    subprocess.run([require_binary("openssl"), *args], check=True, capture_output=True)


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) for CN=``name`` valid for 127.0.0.1; also usable as its own CA."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "subjectAltName=IP:127.0.0.1")  # fmt: skip
    return cert, key


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) of a certification authority of the test's own."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return cert, key


def issue(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A leaf certificate for ``name`` (valid for 127.0.0.1) signed by ``ca``."""
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return cert, key
