"""Settings: defaults, parsing of list-valued variables, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgc_config.settings import RemoteNode, Settings, SettingsError, load_settings


def test_defaults_are_the_embedded_setup(settings_env: Path) -> None:
    s = load_settings()
    assert s.resolved_database_url == f"sqlite:///{(settings_env / 'sgc.db').resolve()}"
    assert s.resolved_broker_url == "filesystem://"
    assert s.resolved_storage_dir == (settings_env / "storage").resolve()
    assert (s.port, s.ae_title, s.stable_age) == (11112, "SGC_NODE", 5.0)
    assert s.archive == [] and s.allowed_calling_aets == []


def test_lists_come_comma_separated(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGC_ARCHIVE", "ORTHANC@127.0.0.1:4242, BACKUP@[::1]:104")
    monkeypatch.setenv("SGC_ALLOWED_CALLING_AETS", "MODALITY1, PACS")
    s = load_settings()
    assert s.archive == [
        RemoteNode(ae_title="ORTHANC", host="127.0.0.1", port=4242),
        RemoteNode(ae_title="BACKUP", host="::1", port=104),
    ]
    assert str(s.archive[0]) == "ORTHANC@127.0.0.1:4242"
    assert s.allowed_calling_aets == ["MODALITY1", "PACS"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SGC_ARCHIVE",
            "ORTHANC@host",
            "SGC_ARCHIVE: Value error, 'ORTHANC@host' is not of the form",
        ),
        ("SGC_ARCHIVE", "A@h:99999", "out of range"),
        ("SGC_PORT", "70000", "SGC_PORT: Input should be less than or equal to 65535"),
        ("SGC_PORT", "eleven", "SGC_PORT"),
        ("SGC_AE_TITLE", "A_VERY_LONG_AE_TITLE", "longer than 16 characters"),
        ("SGC_AE_TITLE", "BAD\\AET", "not allowed"),
        ("SGC_ALLOWED_CALLING_AETS", "OK, WAY_TOO_LONG_AE_TITLE", "longer than 16"),
        ("SGC_STABLE_AGE", "-1", "SGC_STABLE_AGE"),
        ("SGC_DEVICE", "gpu0", "SGC_DEVICE"),
        ("SGC_TLS_CERT", "/x/cert.pem", "must be set together"),
    ],
)
def test_invalid_values_name_the_variable(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="invalid configuration") as info:
        load_settings()
    assert message in str(info.value)


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"SGC_{name.upper()} has no description"
