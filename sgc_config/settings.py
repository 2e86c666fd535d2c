"""All configuration of the node, read from `SGC_*` environment variables in one place.

Why one object: the SCP, the workers and the CLI must agree on where data lives and how the
node talks to the broker and the archive. Every field has a documented default (the embedded
setup: SQLite, filesystem broker, local storage under ``./data``) and invalid values fail
early with a message naming the variable.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # default character repertoire, no backslash


def validate_ae_title(value: str) -> str:
    """An AE title is 1-16 characters of the default repertoire, not all spaces, no backslash."""
    if not value or not value.strip():
        raise ValueError("an AE title must not be empty")
    if len(value) > 16:
        raise ValueError(f"AE title {value!r} is longer than 16 characters")
    if not _AE_RE.match(value):
        raise ValueError(f"AE title {value!r} contains characters not allowed in an AE title")
    return value.strip()


class RemoteNode(BaseModel):
    """A DICOM peer written as ``AET@host:port`` (e.g. ``ORTHANC@pacs.local:4242``)."""

    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, text: str) -> RemoteNode:
        match = re.fullmatch(r"\s*([^@]+)@([^:@\s]+|\[[0-9a-fA-F:]+\]):(\d+)\s*", text)
        if not match:
            raise ValueError(f"{text!r} is not of the form AET@host:port")
        aet, host, port = match.groups()
        port_n = int(port)
        if not 1 <= port_n <= 65535:
            raise ValueError(f"port {port_n} in {text!r} is out of range 1-65535")
        return cls(ae_title=validate_ae_title(aet), host=host.strip("[]"), port=port_n)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class DicomWebNode(BaseModel):
    """A DICOMweb peer written as ``dicomweb+https://host[:port]/base`` (or ``dicomweb+http``).

    Why a prefix: it tells a STOW-RS destination from a DIMSE one in the same SGC_ARCHIVE list.
    """

    url: str

    @classmethod
    def parse(cls, text: str) -> DicomWebNode:
        from urllib.parse import urlsplit

        text = text.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("dicomweb+http", "dicomweb+https") or not parts.hostname:
            raise ValueError(f"{text!r} is not of the form dicomweb+https://host/base")
        if parts.query or parts.fragment:
            raise ValueError(f"{text!r}: a DICOMweb base URL has no query or fragment")
        return cls(url=text.rstrip("/"))

    @property
    def base_url(self) -> str:
        """The HTTP(S) base URL; STOW-RS posts to ``{base_url}/studies``."""
        return self.url.removeprefix("dicomweb+")

    def __str__(self) -> str:
        return self.url


def parse_destination(text: str) -> RemoteNode | DicomWebNode:
    """``AET@host:port`` (DIMSE C-STORE) or ``dicomweb+http(s)://...`` (STOW-RS)."""
    if text.strip().startswith("dicomweb+"):
        return DicomWebNode.parse(text)
    return RemoteNode.parse(text)


#: The report objects the worker can write (SGC_REPORT_FORMATS); worker/reports builds them.
REPORT_FORMATS = ("tid1500", "seg", "mammo-cad")


def _split(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]  # type: ignore[union-attr]


class Settings(BaseSettings):
    """The node's settings; each field is the environment variable ``SGC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SGC_", extra="ignore", validate_default=True)

    data_dir: Path = Field(
        Path("data"), description="Directory for the embedded database, broker and storage."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default SQLite (WAL) at DATA_DIR/sgc.db. "
        "Production: postgresql+psycopg://user@host/db.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL; default the filesystem transport under DATA_DIR/broker. "
        "Production: redis://host:6379/0.",
    )
    storage_dir: Path | None = Field(
        None, description="Where received DICOM files are stored; default DATA_DIR/storage."
    )
    ae_title: str = Field("SGC_NODE", description="Our AE title (1-16 characters).")
    host: str = Field("0.0.0.0", description="Address the SCP listens on.")
    port: int = Field(11112, ge=1, le=65535, description="Port the SCP listens on.")
    check_called_aet: bool = Field(
        False, description="Reject associations whose called AE title is not ours."
    )
    report_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["tid1500", "seg"],
        description="Comma-separated report objects written and delivered per study: tid1500 "
        "(TID 1500 SR, what OHIF reads), seg (the evidence map as a DICOM Segmentation; only "
        "for models that make one), mammo-cad (Mammography CAD SR, TID 4000, what "
        "mammography workstations read).",
    )
    allowed_calling_aets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated calling AE titles allowed to associate; empty allows all.",
    )
    archive: Annotated[list[RemoteNode | DicomWebNode], NoDecode] = Field(
        default_factory=list,
        description="Where SRs are sent: comma-separated AET@host:port (DIMSE C-STORE) or "
        "dicomweb+https://host/base (STOW-RS); empty keeps them local.",
    )
    archive_tls_ca: Path | None = Field(
        None,
        description="Outbound link to the archive: PEM CA bundle that must have signed the "
        "archive's certificate. When set, DIMSE delivery uses TLS; https STOW-RS delivery "
        "trusts this bundle instead of the system's.",
    )
    archive_tls_cert: Path | None = Field(
        None, description="Outbound link to the archive: our client certificate (PEM), if asked."
    )
    archive_tls_key: Path | None = Field(
        None, description="Outbound link to the archive: private key for SGC_ARCHIVE_TLS_CERT."
    )
    archive_token: SecretStr | None = Field(
        None, description="Outbound STOW-RS: bearer token sent to dicomweb+ archives."
    )
    web_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Inbound DICOMweb: port of the STOW-RS endpoint (0: off). `sgc serve` runs "
        "it as a process of its own when set.",
    )
    web_host: str = Field("127.0.0.1", description="Inbound DICOMweb: address it listens on.")
    web_token: SecretStr | None = Field(
        None,
        description="Inbound DICOMweb: bearer token every request must carry (unset: none asked).",
    )
    web_tls_cert: Path | None = Field(
        None, description="Inbound DICOMweb: PEM certificate; enables HTTPS."
    )
    web_tls_key: Path | None = Field(
        None, description="Inbound DICOMweb: PEM private key for SGC_WEB_TLS_CERT."
    )
    web_tls_ca: Path | None = Field(
        None,
        description="Inbound DICOMweb: PEM CA bundle; when set, clients must present a "
        "certificate it signed.",
    )
    web_max_body_mb: int = Field(
        2048, ge=1, description="Inbound DICOMweb: largest request body in MiB (413 above it)."
    )
    accept_other_storage: bool = Field(
        False,
        description="Also accept non-mammography storage SOP classes (stored, not classified).",
    )
    max_associations: int = Field(
        16, ge=1, le=1000, description="Most concurrent associations an SCP process serves."
    )
    scp_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="SCP processes sharing the port (SO_REUSEPORT, Linux): more than one "
        "lets concurrent associations use several cores; each process then accepts up to "
        "MAX_ASSOCIATIONS associations. 0 (default): one per CPU core, at most 8.",
    )
    fsync: bool = Field(
        True, description="fsync every received file before acknowledging (durability)."
    )
    min_free_mb: int = Field(
        512,
        ge=0,
        description="Free-space watermark of the storage volume in MiB: below it new "
        "associations are refused and C-STOREs answer 0xA700.",
    )
    stable_age: float = Field(
        5.0,
        gt=0,
        description="Seconds without a new instance after which a study counts as complete.",
    )
    sweep_interval: float = Field(
        1.0, gt=0, description="Seconds between passes of the SCP's settle/outbox loop."
    )
    resend_after: float = Field(
        300.0,
        gt=0,
        description="Seconds after which a job or delivery still pending is sent again "
        "(a job: then after 2, 4 and every 8 such periods).",
    )
    #: Why a limit: a study whose classification kills its worker (a decoder that segfaults,
    #: memory it exhausts) would otherwise be taken back and sent again for ever, killing a
    #: worker each time. A running job whose heartbeat is older than SGC_RESEND_AFTER counts
    #: as one lost attempt; at this many it is failed with the reason instead of resent.
    max_attempts: int = Field(
        3,
        ge=1,
        description="Times a worker may die (or stop its heartbeat) while classifying one job "
        "before the job is failed as a poison study instead of being sent again.",
    )
    delivery_retry_base: float = Field(
        30.0, gt=0, description="First wait in seconds after a failed SR delivery (doubles)."
    )
    delivery_retry_max: float = Field(
        3600.0, gt=0, description="Longest wait in seconds between SR delivery attempts."
    )
    delivery_give_up: float = Field(
        172800.0,
        gt=0,
        description="Seconds after which an undeliverable SR is marked failed (archives go "
        "down for maintenance: hours, not minutes).",
    )
    tls_cert: Path | None = Field(
        None, description="Inbound DIMSE (the SCP): PEM certificate; enables DICOM TLS."
    )
    tls_key: Path | None = Field(
        None, description="Inbound DIMSE (the SCP): PEM private key for SGC_TLS_CERT."
    )
    tls_ca: Path | None = Field(
        None,
        description="Inbound DIMSE (the SCP): PEM CA bundle; when set, clients must present a "
        "certificate it signed.",
    )
    model: Path | None = Field(
        None, description="Model checkpoint (.safetensors with its card); default the bundled demo."
    )
    device: str = Field("auto", description="Torch device for classification: auto, cpu, cuda:N.")
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Torch CPU threads of a worker process (0: torch's default, one per core). "
        "Its threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE, set by sgc_core), so "
        "beside a busy core two threads ran about as fast as one (0.79 vs 0.83 views/s), "
        "and 1.5x faster on a quiet 2-core machine.",
    )
    classify_memory_mb: int = Field(
        512,
        ge=16,
        le=65536,
        description="Memory budget in MiB of one forward call of the classifier: its "
        "(image x class x K) rows are chunked to fit (results do not depend on it).",
    )
    metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus endpoint.")
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the Prometheus endpoint (0 disables it)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_json: bool = Field(False, description="Write logs as one JSON object per line.")

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, v: str) -> str:
        return validate_ae_title(v)

    @field_validator("report_formats", mode="before")
    @classmethod
    def _report_formats(cls, v: object) -> list[str]:
        chosen = list(dict.fromkeys(f.lower() for f in _split(v)))
        unknown = [f for f in chosen if f not in REPORT_FORMATS]
        if unknown or not chosen:
            raise ValueError(
                f"report formats {unknown or 'none'}: choose from {', '.join(REPORT_FORMATS)}"
            )
        return chosen

    @field_validator("allowed_calling_aets", mode="before")
    @classmethod
    def _aets(cls, v: object) -> list[str]:
        return [validate_ae_title(a) for a in _split(v)]

    @field_validator("archive", mode="before")
    @classmethod
    def _archive(cls, v: object) -> list[RemoteNode | DicomWebNode]:
        if isinstance(v, list) and all(isinstance(x, RemoteNode | DicomWebNode) for x in v):
            return v
        return [parse_destination(x) for x in _split(v)]

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"device {v!r} must be auto, cpu, cuda or cuda:N")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("SGC_TLS_CERT and SGC_TLS_KEY must be set together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("SGC_TLS_CA needs SGC_TLS_CERT and SGC_TLS_KEY")
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ValueError("SGC_WEB_TLS_CERT and SGC_WEB_TLS_KEY must be set together")
        if self.web_tls_ca is not None and self.web_tls_cert is None:
            raise ValueError("SGC_WEB_TLS_CA needs SGC_WEB_TLS_CERT and SGC_WEB_TLS_KEY")
        if (self.archive_tls_cert is None) != (self.archive_tls_key is None):
            raise ValueError("SGC_ARCHIVE_TLS_CERT and SGC_ARCHIVE_TLS_KEY must be set together")
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sgc.db').resolve()}"

    @cached_property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @cached_property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "storage").resolve()

    @cached_property
    def broker_dir(self) -> Path:
        """Folder of the embedded filesystem transport (used only when no broker URL is set)."""
        return (self.data_dir / "broker").resolve()


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; raise a one-line ``SettingsError`` when invalid."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "_".join(str(p) for p in err["loc"]).upper()
            name = f"SGC_{loc}" if loc else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from None


class SettingsError(ValueError):
    """Configuration that cannot run; the CLI prints it and exits with status 2."""
