"""The catalog's digest of a received dataset: BLAKE3 over the dataset bytes.

Why a digest at all: the acknowledgement promises the sender that what it sent is kept, and
the catalog records a digest of the bytes received beside the file (``Instance.sha256``, its
algorithm in ``Instance.digest_algorithm``) so that an identical re-send is recognised and a
stored file can be checked against what was acknowledged.

Why BLAKE3 (migration 0004): the digest is computed on the receive path of every C-STORE.
SHA-256 costs 13.8 ms of CPU per 17 MB mammogram even with the SHA extensions, BLAKE3 (the
``blake3`` package, the reference Rust implementation) 3.9 ms, ``hashlib.blake2b`` 24.6 ms
(benchmarks/hash_speed.py, raw output benchmarks/results/hash_speed.txt); like hashlib, blake3
releases the GIL on long inputs.
Rows written before 0004 keep ``sha256`` as their algorithm; :func:`dataset_digest` reads
either.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from blake3 import blake3

from scp.part10 import PREFIX_LENGTH, meta_end

ALGORITHM = "blake3"
_CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str = ALGORITHM) -> Hasher:
    """An incremental hasher of ``algorithm`` (``blake3``, or ``sha256`` for older rows)."""
    if algorithm == "blake3":
        return blake3()  # one thread: the receive path already runs one per association
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown digest algorithm {algorithm!r}")


def dataset_digest(path: Path | str, algorithm: str = ALGORITHM) -> str:
    """Hex digest of the dataset bytes of a Part 10 file (its File Meta excluded)."""
    digest = new_hasher(algorithm)
    with open(path, "rb") as fp:
        fp.seek(meta_end(fp.read(PREFIX_LENGTH)))
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_digest(data: bytes | bytearray | memoryview, algorithm: str = ALGORITHM) -> str:
    """Hex digest of dataset bytes held in memory (what the catalog records for them)."""
    digest = new_hasher(algorithm)
    digest.update(data)
    return digest.hexdigest()
