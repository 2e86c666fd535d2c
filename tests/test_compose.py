"""compose.yaml and the Dockerfile agree with the code (Docker itself is not on this machine).

What can drift without Docker noticing until deploy day: a service command that `sgc` no longer
accepts, an SGC_ variable that is not a setting, a volume or port that does not line up, a
package the image forgets to copy. Each is checked here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from sgc_config.settings import RemoteNode, Settings, load_settings
from sgc_node.cli import cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
NODE_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image", "").startswith("sgc-node")}


def test_expected_services_exist() -> None:
    expected = {"redis", "postgres", "orthanc", "viewer", "scp", "worker-gpu", "worker-deliver"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(NODE_SERVICES))
def test_each_node_command_is_accepted_by_sgc(name: str) -> None:
    argv = list(NODE_SERVICES[name]["command"])
    ctx = cli.make_context("sgc", argv, resilient_parsing=False)  # raises on unknown options
    sub = cli.get_command(ctx, argv[0])
    assert sub is not None, f"{name}: sgc has no command {argv[0]!r}"
    sub.make_context(argv[0], argv[1:])


@pytest.mark.parametrize("name", sorted(NODE_SERVICES))
def test_each_environment_is_a_valid_configuration(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = NODE_SERVICES[name].get("environment") or {}
    for key in list(os.environ):
        if key.startswith("SGC_"):
            monkeypatch.delenv(key)
    fields = {f"SGC_{f.upper()}" for f in Settings.model_fields}
    for key, value in env.items():
        assert key in fields, f"{name}: {key} is not a setting"
        monkeypatch.setenv(key, str(value))
    load_settings()  # raises SettingsError on an invalid value


def test_each_gpu_worker_has_a_gpu_of_its_own() -> None:
    """`--scale` copies one reservation to every replica (all on one GPU); each classify
    worker must therefore be a service pinned to a different device id."""
    pinned = []
    for name, service in NODE_SERVICES.items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        for device in devices.get("devices", []):
            assert "count" not in device, f"{name}: reserve device_ids, not a count"
            pinned.extend(device["device_ids"])
    assert len(pinned) >= 2 and len(pinned) == len(set(pinned))


def test_ports_volumes_and_peers_line_up() -> None:
    scp = SERVICES["scp"]
    env = scp["environment"]
    port = int(env.get("SGC_PORT", Settings.model_fields["port"].default))
    assert f"{port}:{port}" in scp["ports"]
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
    # Storage is shared by the SCP and every worker.
    for name in ("scp", "worker-gpu", "worker-deliver"):
        assert "storage:/data" in SERVICES[name]["volumes"]
    # The archive the node delivers to is the Orthanc service, and Orthanc knows the node.
    (archive,) = [RemoteNode.parse(x) for x in env["SGC_ARCHIVE"].split(",")]
    orthanc = SERVICES["orthanc"]["environment"]
    assert (archive.host, archive.ae_title) == ("orthanc", orthanc["ORTHANC__DICOM_AET"])
    assert f"{archive.port}:{archive.port}" in SERVICES["orthanc"]["ports"]
    assert f'["{env["SGC_AE_TITLE"]}", "scp", {port}]' in orthanc["ORTHANC__DICOM_MODALITIES"]
    gpu = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_dockerfile_copies_every_package_and_runs_sgc() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject).group(1)
    for package in re.findall(r'"(\w+)\*"', include):
        assert f"COPY {package} ./{package}" in dockerfile, f"image lacks {package}/"
    assert 'ENTRYPOINT ["sgc"]' in dockerfile
    assert "torch==" in dockerfile
